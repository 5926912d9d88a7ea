//! Python `strftime` format strings, rendered with chrono.
//!
//! Dify's `current_time` passes the user's format to Python's `datetime.strftime`, which hands it to glibc.
//! chrono's own syntax is close but not identical, so each directive is rendered on its own:
//! - every directive glibc documents is supported with glibc's meaning (`%a %A %b %B %c %C %d %D %e %F %g %G %h
//!   %H %I %j %k %l %m %M %n %p %P %r %R %s %S %t %T %u %U %V %w %W %x %X %y %Y %z %Z %%`) in the C locale;
//! - `%f` is microseconds (six digits) as in Python, not chrono's nanoseconds;
//! - `%:z` (Python 3.12+) is `+08:00`;
//! - the glibc flags `-` (no padding), `_` (space padding) and `0` (zero padding) work on numeric directives,
//!   `^` upper-cases the result;
//! - anything else (unknown letters, `%#`, `%E`/`%O` modifiers, field widths, a trailing `%`) is copied to the
//!   output literally, as glibc does with conversions it does not know.

use std::fmt::Write as _;

use chrono::{DateTime, TimeZone};

/// Directives with glibc's meaning that chrono renders identically, given as the letter after `%`.
const NATIVE: &str = "aAbBcCdDeFgGhHIjklmMnpPrRsStTuUVwWxXyYzZ";

/// Renders `dt` with a Python/glibc `strftime` format.
pub(crate) fn format<Tz>(dt: &DateTime<Tz>, python_format: &str) -> String
where
    Tz: TimeZone,
    Tz::Offset: std::fmt::Display,
{
    let mut out = String::with_capacity(python_format.len() + 16);
    let mut rest = python_format;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let directive = Directive::parse(&rest[start..]);
        directive.render(dt, &mut out);
        rest = &rest[start + directive.source.len()..];
    }
    out.push_str(rest);
    out
}

/// One `%…` directive as written in the format.
struct Directive<'a> {
    /// The directive's text, starting with `%`.
    source: &'a str,
    /// `-`, `_`, `0` or `^`, if given.
    flag: Option<char>,
    /// `:` before `z`.
    colon: bool,
    /// The conversion character; `None` for a `%` at the very end.
    conversion: Option<char>,
}

impl<'a> Directive<'a> {
    /// Reads the directive at the start of `text` (which starts with `%`).
    fn parse(text: &'a str) -> Self {
        let mut chars = text.char_indices().skip(1).peekable();
        let mut flag = None;
        let mut colon = false;
        if let Some(&(_, c)) = chars.peek()
            && matches!(c, '-' | '_' | '0' | '^')
        {
            flag = Some(c);
            chars.next();
        }
        if let Some(&(_, ':')) = chars.peek() {
            colon = true;
            chars.next();
        }
        match chars.next() {
            Some((index, c)) => Directive {
                source: &text[..index + c.len_utf8()],
                flag,
                colon,
                conversion: Some(c),
            },
            None => Directive {
                source: text,
                flag,
                colon,
                conversion: None,
            },
        }
    }

    fn render<Tz>(&self, dt: &DateTime<Tz>, out: &mut String)
    where
        Tz: TimeZone,
        Tz::Offset: std::fmt::Display,
    {
        let Some(spec) = self.chrono_spec() else {
            out.push_str(self.source);
            return;
        };
        let mut rendered = String::new();
        // `spec` is always a directive chrono knows, so formatting cannot fail; if it ever did, the directive is
        // kept literally rather than failing the whole call.
        if write!(rendered, "{}", dt.format(&spec)).is_err() {
            out.push_str(self.source);
            return;
        }
        if self.flag == Some('^') {
            rendered = rendered.to_uppercase();
        }
        out.push_str(&rendered);
    }

    /// The chrono specifier with the same meaning, or `None` when the directive is to be copied literally.
    fn chrono_spec(&self) -> Option<String> {
        let conversion = self.conversion?;
        let padding = match self.flag {
            Some(c @ ('-' | '_' | '0')) => c.to_string(),
            _ => String::new(),
        };
        match (conversion, self.colon) {
            ('%', false) if self.flag.is_none() => Some("%%".into()),
            ('f', false) if padding.is_empty() => Some("%6f".into()),
            ('z', true) if padding.is_empty() => Some("%:z".into()),
            (c, false) if NATIVE.contains(c) => Some(format!("%{padding}{c}")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use chrono_tz::Tz;

    fn sample() -> DateTime<Tz> {
        // 2024-07-01 08:05:09.000123 in Shanghai.
        let utc = Utc.with_ymd_and_hms(2024, 7, 1, 0, 5, 9).unwrap() + chrono::TimeDelta::microseconds(123);
        utc.with_timezone(&chrono_tz::Asia::Shanghai)
    }

    #[test]
    fn renders_common_python_formats() {
        let dt = sample();
        assert_eq!(format(&dt, "%Y-%m-%d %H:%M:%S"), "2024-07-01 08:05:09");
        assert_eq!(format(&dt, "%Y-%m-%d %H:%M:%S %Z"), "2024-07-01 08:05:09 CST");
        assert_eq!(format(&dt, "%z|%:z"), "+0800|+08:00");
        assert_eq!(format(&dt, "%A, %B %d, %Y %I:%M %p"), "Monday, July 01, 2024 08:05 AM");
        assert_eq!(format(&dt, "%a %b %e %j %U %W %V %u %w"), "Mon Jul  1 183 26 27 27 1 1");
        assert_eq!(format(&dt, "%c"), "Mon Jul  1 08:05:09 2024");
        assert_eq!(
            format(&dt, "%x %X %D %F %T %R"),
            "07/01/24 08:05:09 07/01/24 2024-07-01 08:05:09 08:05"
        );
        assert_eq!(format(&dt, "%s"), "1719792309");
    }

    #[test]
    fn percent_f_is_microseconds() {
        assert_eq!(format(&sample(), "%S.%f"), "09.000123");
    }

    #[test]
    fn glibc_flags() {
        let dt = sample();
        assert_eq!(format(&dt, "%-m/%-d %-H"), "7/1 8");
        assert_eq!(format(&dt, "%_m|%0e"), " 7|01");
        assert_eq!(format(&dt, "%^a %^B"), "MON JULY");
    }

    #[test]
    fn unknown_directives_stay_literal() {
        let dt = sample();
        assert_eq!(format(&dt, "100%% %Q %Ey %3f %#Z end%"), "100% %Q %Ey %3f %#Z end%");
        assert_eq!(format(&dt, "%"), "%");
        assert_eq!(format(&dt, "%é|%.f"), "%é|%.f");
        assert_eq!(format(&dt, "时间 %H时"), "时间 08时");
        assert_eq!(format(&dt, ""), "");
    }
}
