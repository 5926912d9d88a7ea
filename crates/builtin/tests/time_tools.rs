//! The `time` tools, invoked through `toolplane_core::invoke` so parameter validation and casting apply.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::sync::Arc;

use chrono::{NaiveDateTime, TimeZone, Timelike, Utc};
use serde_json::{Value, json};
use toolplane_core::{InvokeOptions, Tool, ToolError, ToolProvider, ToolRuntime, collect_messages, invoke};
use toolplane_net::{NetConfig, SafeClient};

async fn tool(name: &str) -> Arc<dyn Tool> {
    let providers = toolplane_builtin::providers(SafeClient::new(NetConfig::default()).unwrap());
    let time: &Arc<dyn ToolProvider> = providers.iter().find(|p| p.id() == "time").unwrap();
    assert_eq!(time.id(), "time");
    time.tool(name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no tool {name}"))
}

async fn call(name: &str, parameters: Value) -> Result<String, ToolError> {
    let Value::Object(parameters) = parameters else {
        panic!("parameters must be an object")
    };
    let stream = invoke(
        tool(name).await,
        ToolRuntime::default(),
        parameters,
        InvokeOptions::default(),
    )
    .await?;
    let messages = collect_messages(stream).await?;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].kind(), "text");
    Ok(messages[0].as_text().unwrap().to_owned())
}

async fn text(name: &str, parameters: Value) -> String {
    call(name, parameters).await.unwrap()
}

fn validation_message(result: Result<String, ToolError>) -> String {
    match result {
        Err(ToolError::ParameterValidation(message)) => message,
        other => panic!("expected a parameter validation error, got {other:?}"),
    }
}

#[tokio::test]
async fn current_time_defaults_to_utc_now() {
    let before = Utc::now().naive_utc();
    let now = text("current_time", json!({})).await;
    let after = Utc::now().naive_utc();
    let parsed = NaiveDateTime::parse_from_str(&now, "%Y-%m-%d %H:%M:%S").unwrap();
    let before = before.with_nanosecond(0).unwrap();
    assert!(
        parsed >= before && parsed <= after,
        "{now} not between {before} and {after}"
    );
}

#[tokio::test]
async fn current_time_honours_zone_and_python_format() {
    let shanghai = text(
        "current_time",
        json!({"timezone": "Asia/Shanghai", "format": "%z %Z|%f"}),
    )
    .await;
    let (zone, micros) = shanghai.split_once('|').unwrap();
    assert_eq!(zone, "+0800 CST");
    assert_eq!(micros.len(), 6, "%f is microseconds: {micros}");

    let expected = |tz: chrono_tz::Tz| Utc::now().with_timezone(&tz).format("%Y-%m-%d %H").to_string();
    let before = expected(chrono_tz::America::New_York);
    let got = text(
        "current_time",
        json!({"timezone": "America/New_York", "format": "%Y-%m-%d %H"}),
    )
    .await;
    let after = expected(chrono_tz::America::New_York);
    assert!(got == before || got == after, "{got}");

    // An empty format falls back to the default.
    let got = text("current_time", json!({"format": "", "timezone": "UTC"})).await;
    assert!(
        NaiveDateTime::parse_from_str(&got, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{got}"
    );
}

#[tokio::test]
async fn current_time_rejects_zones_outside_the_options() {
    let message = validation_message(call("current_time", json!({"timezone": "Mars/Olympus"})).await);
    assert!(message.contains("Mars/Olympus"), "{message}");
}

#[tokio::test]
async fn localtime_to_timestamp_in_a_zone() {
    let stamp = text(
        "localtime_to_timestamp",
        json!({"localtime": "2024-07-01 12:00:00", "timezone": "Asia/Shanghai"}),
    )
    .await;
    assert_eq!(stamp, "1719806400");
    // Default zone is Asia/Shanghai; Python's strptime also accepts unpadded fields.
    assert_eq!(
        text("localtime_to_timestamp", json!({"localtime": "2024-7-1 12:0:0"})).await,
        "1719806400"
    );
    assert_eq!(
        text(
            "localtime_to_timestamp",
            json!({"localtime": "2024-07-01 12:00:00", "timezone": "UTC"})
        )
        .await,
        "1719835200"
    );
}

#[tokio::test]
async fn bad_zones_and_times_are_validation_errors() {
    let message = validation_message(
        call(
            "localtime_to_timestamp",
            json!({"localtime": "2024-07-01 12:00:00", "timezone": "Asia/Atlantis"}),
        )
        .await,
    );
    assert!(
        message.contains("Asia/Atlantis") && message.contains("IANA"),
        "{message}"
    );

    let message = validation_message(call("localtime_to_timestamp", json!({"localtime": "yesterday"})).await);
    assert!(
        message.contains("yesterday") && message.contains("%Y-%m-%d %H:%M:%S"),
        "{message}"
    );

    let message = validation_message(
        call(
            "timezone_conversion",
            json!({"current_time": "2024-07-01 12:00:00", "current_timezone": "UTC", "target_timezone": "utc/nowhere"}),
        )
        .await,
    );
    assert!(
        message.contains("target_timezone") && message.contains("utc/nowhere"),
        "{message}"
    );

    let message = validation_message(call("timestamp_to_localtime", json!({"timezone": "UTC"})).await);
    assert!(message.contains("timestamp"), "{message}");
}

#[tokio::test]
async fn timestamp_to_localtime_in_a_zone() {
    assert_eq!(
        text("timestamp_to_localtime", json!({"timestamp": 1719806400})).await,
        "2024-07-01 12:00:00"
    );
    assert_eq!(
        text(
            "timestamp_to_localtime",
            json!({"timestamp": "1719806400", "timezone": "UTC"})
        )
        .await,
        "2024-07-01 04:00:00"
    );
    assert_eq!(
        text(
            "timestamp_to_localtime",
            json!({"timestamp": 1719806400.75, "timezone": "Asia/Tokyo"})
        )
        .await,
        "2024-07-01 13:00:00"
    );
}

#[tokio::test]
async fn timestamps_round_trip_across_dst() {
    let cases = [
        ("2024-07-01 12:00:00", "Asia/Shanghai"),
        ("2024-03-31 03:30:00", "Europe/Berlin"),
        ("2024-11-03 12:00:00", "America/New_York"),
        ("2024-01-15 23:59:59", "Pacific/Auckland"),
        ("1999-12-31 23:59:59", "Australia/Sydney"),
    ];
    for (local, zone) in cases {
        let stamp = text("localtime_to_timestamp", json!({"localtime": local, "timezone": zone})).await;
        let expected = zone
            .parse::<chrono_tz::Tz>()
            .unwrap()
            .from_local_datetime(&NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").unwrap())
            .single()
            .unwrap()
            .timestamp();
        assert_eq!(stamp, expected.to_string(), "{local} {zone}");
        let back = text("timestamp_to_localtime", json!({"timestamp": stamp, "timezone": zone})).await;
        assert_eq!(back, local, "{zone}");
    }
}

#[tokio::test]
async fn timezone_conversion_is_dst_aware() {
    let convert = |time: &str, from: &str, to: &str| json!({"current_time": time, "current_timezone": from, "target_timezone": to});
    assert_eq!(
        text(
            "timezone_conversion",
            convert("2024-07-01 12:00:00", "Asia/Shanghai", "Asia/Tokyo")
        )
        .await,
        "2024-07-01 13:00:00"
    );
    // Defaults: Asia/Shanghai → Asia/Tokyo.
    assert_eq!(
        text("timezone_conversion", json!({"current_time": "2024-12-31 23:30:00"})).await,
        "2025-01-01 00:30:00"
    );
    // London is UTC+1 in summer and UTC+0 in winter; Shanghai has no DST.
    assert_eq!(
        text(
            "timezone_conversion",
            convert("2024-07-01 12:00:00", "Europe/London", "Asia/Shanghai")
        )
        .await,
        "2024-07-01 19:00:00"
    );
    assert_eq!(
        text(
            "timezone_conversion",
            convert("2024-01-15 12:00:00", "Europe/London", "Asia/Shanghai")
        )
        .await,
        "2024-01-15 20:00:00"
    );
    // In the week where the US has switched to summer time and Europe has not, the gap is 5 hours, not 6.
    assert_eq!(
        text(
            "timezone_conversion",
            convert("2024-03-20 12:00:00", "America/New_York", "Europe/Berlin")
        )
        .await,
        "2024-03-20 17:00:00"
    );
    assert_eq!(
        text(
            "timezone_conversion",
            convert("2024-04-20 12:00:00", "America/New_York", "Europe/Berlin")
        )
        .await,
        "2024-04-20 18:00:00"
    );
}

#[tokio::test]
async fn weekday_texts_match_dify() {
    assert_eq!(
        text("weekday", json!({"year": 2024, "month": 7, "day": 1})).await,
        "July 1, 2024 is Monday."
    );
    assert_eq!(
        text("weekday", json!({"year": "2000", "month": "2", "day": "29"})).await,
        "February 29, 2000 is Tuesday."
    );
    assert_eq!(
        text("weekday", json!({"year": 1, "month": 1, "day": 1})).await,
        "January 1, 1 is Monday."
    );
    assert_eq!(
        text("weekday", json!({"year": 2023, "month": 2, "day": 29})).await,
        "Invalid date: Year 2023, Month 2, Day 29."
    );
    assert_eq!(
        text("weekday", json!({"year": 2024, "month": 13, "day": 1})).await,
        "Invalid date: Year 2024, Month 13, Day 1."
    );
    assert_eq!(
        text("weekday", json!({"year": 0, "month": 1, "day": 1})).await,
        "Invalid date: Year 0, Month 1, Day 1."
    );
    let message = validation_message(call("weekday", json!({"year": 2024, "month": 7})).await);
    assert!(message.contains("day"), "{message}");
}
