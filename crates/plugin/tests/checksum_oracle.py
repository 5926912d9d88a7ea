#!/usr/bin/env python3
"""Independent computation of a .difypkg checksum and signed data, stdlib only.

Usage: checksum_oracle.py <package.difypkg> [<RSA PUBLIC KEY pem>]
Prints:
  checksum <hex>    sha256 over sorted sha256(path) || sha256(content), directory entries skipped
  signature <state> with a key: "valid" when the zip comment's RSA PKCS#1 v1.5 SHA-256 signature over the
                    archive-order sha256(content) hashes followed by the decimal time verifies, else "invalid"
                    ("unsigned" without a {"signature","time"} comment)
"""
import base64
import hashlib
import json
import sys
import zipfile


def main(path: str) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = [info for info in archive.infolist() if not info.filename.endswith("/")]
        contents = {info.filename: archive.read(info) for info in entries}
        comment = archive.comment

    data = b"".join(
        hashlib.sha256(name.encode("utf-8")).digest() + hashlib.sha256(contents[name]).digest()
        for name in sorted(contents, key=lambda n: n.encode("utf-8"))
    )
    print("checksum", hashlib.sha256(data).hexdigest())

    if len(sys.argv) < 3:
        return
    try:
        meta = json.loads(comment.decode("utf-8"))
        signature = base64.b64decode(meta["signature"])
        signed_time = int(meta["time"])
    except (ValueError, KeyError, TypeError):
        print("signature unsigned")
        return
    signed = b"".join(hashlib.sha256(contents[info.filename]).digest() for info in entries)
    signed += str(signed_time).encode("ascii")
    n, e = read_pkcs1_public_key(sys.argv[2])
    print("signature", "valid" if rsa_pkcs1v15_sha256_ok(n, e, signed, signature) else "invalid")


def der(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One DER element at pos: (tag, contents, next position)."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    return tag, data[pos : pos + length], pos + length


def read_pkcs1_public_key(path: str) -> tuple[int, int]:
    with open(path, encoding="ascii") as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("-----")]
    body = base64.b64decode("".join(lines))
    _, seq, _ = der(body, 0)  # RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    _, modulus, pos = der(seq, 0)
    _, exponent, _ = der(seq, pos)
    return int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big")


def rsa_pkcs1v15_sha256_ok(n: int, e: int, message: bytes, signature: bytes) -> bool:
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    em = pow(int.from_bytes(signature, "big"), e, n).to_bytes(k, "big")
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(message).digest()
    expected = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
    return em == expected


if __name__ == "__main__":
    main(sys.argv[1])
