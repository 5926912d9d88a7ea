import os
import time
from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage


class EchoTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        text = tool_parameters.get("text", "")
        mode = tool_parameters.get("mode") or "basic"
        if mode == "basic":
            yield self.create_text_message(f"echo: {text}")
            yield self.create_json_message({"text": text, "creds": sorted(self.runtime.credentials.keys()), "pid": os.getpid()})
            yield self.create_variable_message("upper", text.upper())
            yield self.create_link_message("https://example.invalid/x")
        elif mode == "storage":
            self.session.storage.set("k1", text.encode())
            yield self.create_text_message(f"storage got: {self.session.storage.get('k1').decode()}")
        elif mode == "error":
            raise ValueError(f"boom: {text}")
        elif mode == "crash":
            yield self.create_text_message("about to crash")
            time.sleep(0.2)
            os._exit(3)
        elif mode == "slow":
            time.sleep(float(text))
            yield self.create_text_message("slept")
        elif mode == "huge":
            yield self.create_text_message("x" * int(text))
        elif mode == "alloc":
            try:
                block = bytearray(int(text))
                yield self.create_text_message(f"allocated {len(block)}")
            except MemoryError:
                yield self.create_text_message("MemoryError")
        elif mode == "env":
            yield self.create_json_message({"keys": sorted(os.environ.keys())})
        elif mode == "read":
            # Reports the outcome instead of raising, so the sandbox tests can assert it.
            try:
                with open(text, "rb") as f:
                    yield self.create_text_message(f"read {len(f.read())} bytes")
            except OSError as e:
                yield self.create_text_message(f"{type(e).__name__}: {e.strerror}")
        elif mode == "write":
            try:
                with open(text, "w") as f:
                    f.write("written by the plugin")
                yield self.create_text_message("written")
            except OSError as e:
                yield self.create_text_message(f"{type(e).__name__}: {e.strerror}")
        elif mode == "syscalls":
            import ctypes
            import errno
            import tempfile

            libc = ctypes.CDLL(None, use_errno=True)

            def outcome(rc):
                return "ok" if rc == 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

            ptrace = libc.ptrace
            ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
            calls = {
                "ptrace": lambda: ptrace(0, 0, None, None),  # PTRACE_TRACEME
                "unshare": lambda: libc.unshare(0x00020000),  # CLONE_NEWNS
                "setns": lambda: libc.setns(-1, 0),  # EBADF when allowed
            }
            wanted = text.split(",") if text else list(calls)
            with tempfile.NamedTemporaryFile() as scratch:
                tmp = scratch.name
            report = {name: outcome(calls[name]()) for name in wanted}
            try:
                import multiprocessing

                multiprocessing.Lock()  # a POSIX semaphore in /dev/shm
                report["semaphore"] = "ok"
            except OSError as e:
                report["semaphore"] = type(e).__name__
            report.update({"tmpdir": tmp, "cwd": os.getcwd(), "ppid": os.getppid()})
            yield self.create_json_message(report)
