//! The `time` provider: Dify's five date and time tools, computed with the IANA time zone database
//! (chrono-tz).
//!
//! Outputs are Dify's texts. Where Dify answers a bad input with a text message or a generic invoke error,
//! toolplane returns [`ToolError::ParameterValidation`] naming the parameter and the accepted form, because the
//! caller (usually an LLM) can fix it: unknown time zones, times not in `%Y-%m-%d %H:%M:%S`, timestamps out of
//! range. The one exception is `weekday`, whose `Invalid date: …` text is part of its contract.
//!
//! Local times that occur twice (the hour repeated when daylight saving time ends) are read as the first
//! occurrence, and local times that do not exist (skipped when it starts) are read with the offset in force
//! before the gap; that is Python's `fold=0` behaviour, which Dify relies on.

mod strftime;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use futures::StreamExt;
use serde_json::{Map, Number, Value};
use tokio_util::sync::CancellationToken;
use toolplane_core::{MessageStream, Tool, ToolEntity, ToolError, ToolInvokeMessage, ToolRuntime};

use crate::declaration::{self, DeclarationError};
use crate::provider::BuiltinProvider;

/// The provider's name (and id).
pub const PROVIDER_NAME: &str = "time";

const DECLARATION_FILE: &str = "time/provider.json";
const DECLARATION: &str = include_str!("provider.json");
const ICON: &[u8] = include_bytes!("icon.svg");

/// The wall-clock format Dify's conversion tools read and write.
const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Builds the `time` provider from its declaration.
pub(crate) fn provider() -> Result<BuiltinProvider, DeclarationError> {
    let declaration = declaration::parse(DECLARATION_FILE, DECLARATION)?;
    let tools = declaration
        .tools
        .into_iter()
        .map(|entity| {
            let run = implementation(&entity.identity.name).ok_or_else(|| DeclarationError {
                file: DECLARATION_FILE,
                reason: format!("tool {:?} is declared but not implemented", entity.identity.name),
            })?;
            Ok(Arc::new(TimeTool { entity, run }) as Arc<dyn Tool>)
        })
        .collect::<Result<Vec<_>, DeclarationError>>()?;
    Ok(BuiltinProvider::new(declaration.provider, tools, ICON))
}

/// What a time tool computes from its validated parameters: the text it answers with.
type Run = fn(&Map<String, Value>) -> Result<String, ToolError>;

fn implementation(tool: &str) -> Option<Run> {
    Some(match tool {
        "current_time" => current_time,
        "localtime_to_timestamp" => localtime_to_timestamp,
        "timestamp_to_localtime" => timestamp_to_localtime,
        "timezone_conversion" => timezone_conversion,
        "weekday" => weekday,
        _ => return None,
    })
}

/// A time tool: a declaration and the pure function that answers it with one text message.
struct TimeTool {
    entity: ToolEntity,
    run: Run,
}

#[async_trait]
impl Tool for TimeTool {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }

    async fn invoke(
        &self,
        _runtime: ToolRuntime,
        parameters: Map<String, Value>,
        _cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let text = (self.run)(&parameters)?;
        Ok(futures::stream::iter([Ok(ToolInvokeMessage::text(text))]).boxed())
    }
}

/// `current_time`: now in `timezone`, formatted with the Python strftime `format`.
fn current_time(parameters: &Map<String, Value>) -> Result<String, ToolError> {
    let zone = zone(parameters, "timezone")?;
    let format = string(parameters, "format")?;
    Ok(strftime::format(&Utc::now().with_timezone(&zone), format))
}

/// `localtime_to_timestamp`: the Unix timestamp (seconds) of a wall-clock time in `timezone`.
fn localtime_to_timestamp(parameters: &Map<String, Value>) -> Result<String, ToolError> {
    let local = wall_clock(parameters, "localtime")?;
    let zone = zone(parameters, "timezone")?;
    Ok(localize(zone, local)?.timestamp().to_string())
}

/// `timestamp_to_localtime`: the wall-clock time of a Unix timestamp in `timezone`.
fn timestamp_to_localtime(parameters: &Map<String, Value>) -> Result<String, ToolError> {
    let timestamp = number(parameters, "timestamp")?;
    let zone = zone(parameters, "timezone")?;
    let instant = instant_of(timestamp).ok_or_else(|| {
        ToolError::param(format!(
            "timestamp {timestamp} is out of range; give seconds since 1970-01-01 00:00:00 UTC, e.g. 1719806400"
        ))
    })?;
    Ok(instant.with_timezone(&zone).format(DATETIME_FORMAT).to_string())
}

/// `timezone_conversion`: the wall-clock time in `target_timezone` equal to `current_time` in `current_timezone`.
fn timezone_conversion(parameters: &Map<String, Value>) -> Result<String, ToolError> {
    let local = wall_clock(parameters, "current_time")?;
    let source = zone(parameters, "current_timezone")?;
    let target = zone(parameters, "target_timezone")?;
    let converted = localize(source, local)?.with_timezone(&target);
    Ok(converted.format(DATETIME_FORMAT).to_string())
}

/// `weekday`: `"July 1, 2024 is Monday."`, or Dify's `Invalid date: …` text for a date that does not exist.
fn weekday(parameters: &Map<String, Value>) -> Result<String, ToolError> {
    let year = number(parameters, "year")?;
    let month = number(parameters, "month")?;
    let day = number(parameters, "day")?;
    Ok(match calendar_date(year, month, day) {
        Some(date) => format!(
            "{} {}, {} is {}.",
            month_name(date.month()),
            date.day(),
            date.year(),
            weekday_name(date.weekday())
        ),
        // Numbers print as Python prints them: `2024` for integers, `2024.5` for floats.
        None => format!("Invalid date: Year {year}, Month {month}, Day {day}."),
    })
}

/// The date Python's `datetime(int(y), int(m), int(d))` accepts after Dify's range check, if any.
fn calendar_date(year: &Number, month: &Number, day: &Number) -> Option<NaiveDate> {
    let (year, month, day) = (year.as_f64()?, month.as_f64()?, day.as_f64()?);
    if !(year >= 1.0 && (1.0..=12.0).contains(&month) && (1.0..=31.0).contains(&day)) {
        return None;
    }
    // Truncation like Python's int(); `as` saturates, and the year check below rejects what saturated.
    let year = year.trunc() as i32;
    if year > 9999 {
        return None; // Python's datetime.MAXYEAR
    }
    NaiveDate::from_ymd_opt(year, month.trunc() as u32, day.trunc() as u32)
}

fn month_name(month: u32) -> &'static str {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    usize::try_from(month)
        .ok()
        .and_then(|m| m.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("")
}

fn weekday_name(weekday: Weekday) -> &'static str {
    match weekday {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

/// Reads a wall-clock time in Python's `%Y-%m-%d %H:%M:%S`, which also accepts unpadded fields (`2024-1-1 0:0:0`).
fn wall_clock(parameters: &Map<String, Value>, name: &str) -> Result<NaiveDateTime, ToolError> {
    let raw = string(parameters, name)?;
    NaiveDateTime::parse_from_str(raw.trim(), DATETIME_FORMAT).map_err(|e| {
        ToolError::param(format!(
            "parameter {name:?}: {raw:?} is not a time in the format {DATETIME_FORMAT}, e.g. 2024-07-01 12:00:00 ({e})"
        ))
    })
}

/// Looks a time zone up in the IANA database.
fn zone(parameters: &Map<String, Value>, name: &str) -> Result<Tz, ToolError> {
    let raw = string(parameters, name)?;
    raw.trim().parse::<Tz>().map_err(|_| {
        ToolError::param(format!(
            "parameter {name:?}: unknown time zone {raw:?}; use an IANA time zone name such as UTC, Asia/Shanghai \
             or America/New_York (names are case-sensitive)"
        ))
    })
}

/// The instant a wall-clock time denotes in `zone`, with Python's `fold=0` rules for DST transitions.
fn localize(zone: Tz, local: NaiveDateTime) -> Result<DateTime<Tz>, ToolError> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(instant) | LocalResult::Ambiguous(instant, _) => Ok(instant),
        LocalResult::None => {
            // A time skipped by a transition: read it with the offset in force just before the gap. Gaps are at
            // most a day long (Samoa, 2011), so a valid local time is found within two days before.
            let before = (1..=48)
                .filter_map(|hours| zone.from_local_datetime(&(local - TimeDelta::hours(hours))).earliest())
                .next()
                .ok_or_else(|| {
                    ToolError::param(format!(
                        "{local} does not exist in time zone {zone} and cannot be interpreted"
                    ))
                })?;
            let offset = TimeDelta::seconds(i64::from(before.offset().fix().local_minus_utc()));
            Ok(Utc.from_utc_datetime(&(local - offset)).with_timezone(&zone))
        }
    }
}

/// The instant of a Unix timestamp in seconds; fractions are kept, so the shown second is the floor, as in Python.
fn instant_of(timestamp: &Number) -> Option<DateTime<Utc>> {
    if let Some(seconds) = timestamp.as_i64() {
        return DateTime::from_timestamp(seconds, 0);
    }
    let value = timestamp.as_f64()?;
    let seconds = value.floor();
    if !seconds.is_finite() || seconds.abs() > i64::MAX as f64 / 2.0 {
        return None;
    }
    // The fraction is in [0, 1), so the nanoseconds fit in u32.
    let nanos = ((value - seconds) * 1e9) as u32;
    DateTime::from_timestamp(seconds as i64, nanos.min(999_999_999))
}

/// A string parameter; validation has already applied defaults, so absence means a caller bypassed it.
fn string<'a>(parameters: &'a Map<String, Value>, name: &str) -> Result<&'a str, ToolError> {
    match parameters.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ToolError::param(format!(
            "parameter {name:?} must be a string, got {other}"
        ))),
        None => Err(ToolError::param(format!("missing required parameter {name:?}"))),
    }
}

fn number<'a>(parameters: &'a Map<String, Value>, name: &str) -> Result<&'a Number, ToolError> {
    match parameters.get(name) {
        Some(Value::Number(n)) => Ok(n),
        Some(other) => Err(ToolError::param(format!(
            "parameter {name:?} must be a number, got {other}"
        ))),
        None => Err(ToolError::param(format!("missing required parameter {name:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test parameters are objects"),
        }
    }

    #[test]
    fn gap_times_use_the_offset_before_the_gap() {
        // 2024-03-10 02:30 does not exist in New York; Python (fold=0) reads it as EST, i.e. 07:30 UTC.
        let local = NaiveDateTime::parse_from_str("2024-03-10 02:30:00", DATETIME_FORMAT).unwrap();
        let instant = localize(chrono_tz::America::New_York, local).unwrap();
        assert_eq!(instant.timestamp(), 1_710_055_800);
        assert_eq!(instant.format(DATETIME_FORMAT).to_string(), "2024-03-10 03:30:00");
    }

    #[test]
    fn repeated_times_use_the_first_occurrence() {
        // 2024-11-03 01:30 happens twice in New York; the first is EDT (05:30 UTC).
        let local = NaiveDateTime::parse_from_str("2024-11-03 01:30:00", DATETIME_FORMAT).unwrap();
        let instant = localize(chrono_tz::America::New_York, local).unwrap();
        assert_eq!(instant.timestamp(), 1_730_611_800);
    }

    #[test]
    fn fractional_timestamps_floor_like_python() {
        let p = params(json!({"timestamp": -1.5, "timezone": "UTC"}));
        assert_eq!(timestamp_to_localtime(&p).unwrap(), "1969-12-31 23:59:58");
        let p = params(json!({"timestamp": 1e300, "timezone": "UTC"}));
        assert!(matches!(
            timestamp_to_localtime(&p),
            Err(ToolError::ParameterValidation(_))
        ));
    }

    #[test]
    fn weekday_range_rules_follow_python() {
        let p = params(json!({"year": 2024.9, "month": 2, "day": 29}));
        assert_eq!(weekday(&p).unwrap(), "February 29, 2024 is Thursday.");
        let p = params(json!({"year": 10000, "month": 1, "day": 1}));
        assert_eq!(weekday(&p).unwrap(), "Invalid date: Year 10000, Month 1, Day 1.");
        let p = params(json!({"year": 2024, "month": 0.5, "day": 1}));
        assert_eq!(weekday(&p).unwrap(), "Invalid date: Year 2024, Month 0.5, Day 1.");
    }
}
