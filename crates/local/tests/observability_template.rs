//! The alarms and the dashboard of template.yaml, read as CloudFormation reads them:
//! every stage function has an iterator-age and an errors alarm, thresholds are
//! parameters, and the dashboard body is valid JSON once `!Sub` has put the stack's
//! names in (cfn-lint and `sam validate` do not parse the body).

use std::collections::BTreeSet;

use serde_yaml::{Mapping, Value};
use sluice_local::template::BUNDLED_TEMPLATE;

fn template() -> Value {
    serde_yaml::from_str(BUNDLED_TEMPLATE).expect("template.yaml is YAML")
}

fn section<'a>(t: &'a Value, name: &str) -> &'a Mapping {
    t.get(name)
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("template.yaml has {name}"))
}

fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    section(t, "Resources")
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(ty))
        .map(|(id, r)| (id.as_str().expect("logical id"), r))
        .collect()
}

/// `(tag, value)` of a short-form intrinsic (`!Ref X` is `("!Ref", X)`).
fn tagged(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string(), &t.value)),
        _ => None,
    }
}

fn ref_target(v: &Value) -> Option<&str> {
    match tagged(v)? {
        (tag, Value::String(s)) if tag == "!Ref" => Some(s.as_str()),
        _ => None,
    }
}

/// Functions triggered by a Kinesis stream: the pipeline's stages.
fn stage_functions(t: &Value) -> Vec<&str> {
    of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(_, f)| {
            f["Properties"]
                .get("Events")
                .and_then(Value::as_mapping)
                .is_some_and(|events| {
                    events
                        .values()
                        .any(|e| e.get("Type").and_then(Value::as_str) == Some("Kinesis"))
                })
        })
        .map(|(id, _)| id)
        .collect()
}

/// (namespace, metric, statistic, dimension value's `!Ref`/`!GetAtt` target) per alarm.
fn alarms(t: &Value) -> Vec<(&str, String, String, String, String)> {
    of_type(t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(id, a)| {
            let p = &a["Properties"];
            let dimension = &p["Dimensions"][0]["Value"];
            let target = ref_target(dimension)
                .map(str::to_owned)
                .or_else(|| match tagged(dimension) {
                    Some((tag, Value::String(path))) if tag == "!GetAtt" => {
                        path.split('.').next().map(str::to_owned)
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{id}: dimension names a resource of the stack"));
            let text = |k: &str| {
                p[k].as_str()
                    .unwrap_or_else(|| panic!("{id}: {k} is a string"))
                    .to_owned()
            };
            (
                id,
                text("Namespace"),
                text("MetricName"),
                text("Statistic"),
                target,
            )
        })
        .collect()
}

#[test]
fn every_stage_function_has_an_iterator_age_and_an_errors_alarm() {
    let t = template();
    let stages = stage_functions(&t);
    assert_eq!(stages.len(), 4, "{stages:?}");
    let alarms = alarms(&t);
    for f in &stages {
        for (metric, statistic) in [("IteratorAge", "Maximum"), ("Errors", "Sum")] {
            let found = alarms.iter().filter(|(_, ns, m, stat, target)| {
                ns == "AWS/Lambda" && m == metric && stat == statistic && target == f
            });
            assert_eq!(found.count(), 1, "{f}: one {metric} alarm ({statistic})");
        }
    }
    let has = |ns: &str, metric: &str, target: &str| {
        alarms
            .iter()
            .any(|(_, n, m, _, t)| n == ns && m == metric && t == target)
    };
    assert!(has("AWS/Kinesis", "IncomingRecords", "DeadLetterStream"));
    // The query function: crashes (Errors) and store failures it answers as 5xx.
    assert!(has("AWS/Lambda", "Errors", "QueryFunction"));
    assert!(has("AWS/Lambda", "Url5xxCount", "QueryFunction"));
    assert!(has(
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "FailedBatchesQueue"
    ));
}

#[test]
fn alarm_thresholds_are_parameters_and_alarms_notify_the_topic_when_there_is_one() {
    let t = template();
    let parameters = section(&t, "Parameters");
    for (id, a) in of_type(&t, "AWS::CloudWatch::Alarm") {
        let p = &a["Properties"];
        let threshold = ref_target(&p["Threshold"]).unwrap_or_else(|| panic!("{id}: !Ref"));
        let declared = &parameters[threshold];
        assert_eq!(
            declared["Type"].as_str(),
            Some("Number"),
            "{id}: {threshold}"
        );
        assert!(
            declared.get("Default").is_some(),
            "{id}: {threshold} has a default"
        );
        assert_eq!(
            p["TreatMissingData"].as_str(),
            Some("notBreaching"),
            "{id}: an idle pipeline is not an alarm"
        );
        for actions in ["AlarmActions", "OKActions"] {
            let (tag, branches) = tagged(&p[actions]).unwrap_or_else(|| panic!("{id}: !If"));
            assert_eq!(tag, "!If", "{id}: {actions}");
            assert_eq!(
                branches[0].as_str(),
                Some("HasAlarmEmail"),
                "{id}: {actions}"
            );
            assert_eq!(ref_target(&branches[1][0]), Some("AlarmTopic"), "{id}");
        }
    }
    assert_eq!(
        section(&t, "Resources")["AlarmTopic"]["Condition"].as_str(),
        Some("HasAlarmEmail")
    );
}

/// `text` with every `${Name}` replaced as CloudFormation would (by a placeholder
/// without quotes or backslashes) and every `${!Literal}` by `${Literal}`; panics on a
/// name that is not a parameter, a resource (or its attribute) or a pseudo parameter.
fn substitute(text: &str, known: &BTreeSet<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').expect("a closed ${...}");
        let name = &after[..end];
        match name.strip_prefix('!') {
            Some(literal) => out.push_str(&format!("${{{literal}}}")),
            None => {
                let base = name.split('.').next().unwrap_or(name);
                assert!(
                    known.contains(base) || name.starts_with("AWS::"),
                    "${{{name}}} names nothing in the template"
                );
                out.push_str(&format!("value-of-{}", name.replace("::", "-")));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_dashboard_body_is_json_once_substituted() {
    let t = template();
    let dashboards = of_type(&t, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1);
    let (tag, body) = tagged(&dashboards[0].1["Properties"]["DashboardBody"]).expect("!Sub");
    assert_eq!(tag, "!Sub");
    let known: BTreeSet<String> = section(&t, "Parameters")
        .keys()
        .chain(section(&t, "Resources").keys())
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let text = substitute(body.as_str().expect("a string body"), &known);
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let widgets = json["widgets"].as_array().expect("widgets");
    assert!(widgets.len() >= 6, "{} widgets", widgets.len());
    let mut namespaces = BTreeSet::new();
    let mut metric_names = BTreeSet::new();
    for w in widgets {
        for key in ["x", "y", "width", "height"] {
            assert!(w[key].is_u64(), "{key} of {w}");
        }
        let metrics = w["properties"]["metrics"].as_array().expect("metrics");
        assert!(!metrics.is_empty(), "{w}");
        for m in metrics {
            match m {
                serde_json::Value::Array(row) => {
                    namespaces.insert(row[0].as_str().expect("namespace").to_owned());
                    metric_names.insert(row[1].as_str().expect("metric").to_owned());
                }
                serde_json::Value::Object(e) => {
                    let expression = e["expression"].as_str().expect("an expression");
                    assert!(expression.contains("Reason"), "{expression}");
                    assert!(e["id"].is_string());
                }
                other => panic!("a metric row is a list or an expression: {other}"),
            }
        }
    }
    for ns in [
        "Sluice",
        "AWS/Lambda",
        "AWS/DynamoDB",
        "AWS/Kinesis",
        "AWS/SQS",
    ] {
        assert!(namespaces.contains(ns), "{ns}: {namespaces:?}");
    }
    // The stages' EMF metrics by the names crates/aws/src/telemetry.rs writes.
    for name in [
        "EventsIn",
        "RecordsOut",
        "Late",
        "Duplicates",
        "ReadRequestUnits",
        "WriteRequestUnits",
        "IteratorAge",
        "Errors",
        "Duration",
        "ConsumedWriteCapacityUnits",
    ] {
        assert!(metric_names.contains(name), "{name}: {metric_names:?}");
    }
    // Every stage appears, by its function's name.
    for f in stage_functions(&t) {
        assert!(text.contains(&format!("value-of-{f}")), "{f}");
    }
}

#[test]
fn substitution_refuses_unknown_names_and_keeps_literals() {
    let known: BTreeSet<String> = ["A".to_owned()].into();
    assert_eq!(
        substitute("${A}-${AWS::Region} ${!PROP('x')}", &known),
        "value-of-A-value-of-AWS-Region ${PROP('x')}"
    );
    assert!(std::panic::catch_unwind(|| substitute("${B}", &known)).is_err());
}
