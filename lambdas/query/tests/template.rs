//! The query function in `template.yaml`: a function URL with IAM auth, built like the
//! other functions, and a role that reads exactly what the readers call.

use std::collections::BTreeSet;

use serde_yaml::Value;
use sluice_aws::dynamodb::alerts::BY_WINDOW_INDEX;
use sluice_aws::provision::INDEXES;
use sluice_core::resources::ALERTS_TABLE;

const TEMPLATE: &str = include_str!("../../../template.yaml");

fn template() -> Value {
    serde_yaml::from_str(TEMPLATE).expect("template.yaml is YAML")
}

/// `(tag, value)` of a short-form intrinsic (`!Ref X`, `!GetAtt X.Arn`, `!Sub "…"`).
fn tagged(v: &Value) -> Option<(String, &str)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string(), t.value.as_str()?)),
        _ => None,
    }
}

fn is(v: &Value, tag: &str, value: &str) -> bool {
    tagged(v).is_some_and(|(t, v)| t == tag && v == value)
}

fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(s) => s.iter().collect(),
        other => vec![other],
    }
}

#[test]
fn the_query_function_is_a_function_url_with_iam_auth_built_like_the_others() {
    let t = template();
    let f = &t["Resources"]["QueryFunction"];
    assert_eq!(f["Type"].as_str(), Some("AWS::Serverless::Function"));
    assert_eq!(
        f["Metadata"]["BuildMethod"].as_str(),
        Some("rust-cargolambda")
    );
    assert_eq!(
        f["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("query")
    );
    let props = &f["Properties"];
    assert_eq!(
        props["FunctionUrlConfig"]["AuthType"].as_str(),
        Some("AWS_IAM")
    );
    assert!(props["Events"].is_null(), "no trigger but its URL");
    assert!(props["Policies"].is_null(), "its own role, no SAM policies");
    // arm64 and provided.al2023 come from Globals, as for every function.
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(list(&globals["Architectures"])[0].as_str(), Some("arm64"));
    assert!(props["Runtime"].is_null() && props["Architectures"].is_null());
    let env = &props["Environment"]["Variables"];
    assert!(is(&env["AGGREGATES_TABLE"], "!Ref", "AggregatesTable"));
    assert!(is(&env["ALERTS_TABLE"], "!Ref", "AlertsTable"));
    assert!(is(
        &t["Outputs"]["QueryFunctionUrl"]["Value"],
        "!GetAtt",
        "QueryFunctionUrl.FunctionUrl"
    ));
    let group = tagged(&props["LoggingConfig"]["LogGroup"])
        .expect("!Ref <group>")
        .1;
    let group = &t["Resources"][group];
    assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"));
    assert!(is(
        &group["Properties"]["RetentionInDays"],
        "!Ref",
        "LogRetentionDays"
    ));
}

#[test]
fn the_query_role_reads_exactly_the_two_tables_as_the_readers_do() {
    let t = template();
    let role_id = tagged(&t["Resources"]["QueryFunction"]["Properties"]["Role"])
        .expect("Role: !GetAtt <role>.Arn")
        .1
        .trim_end_matches(".Arn");
    let role = &t["Resources"][role_id];
    assert!(role["Properties"]["ManagedPolicyArns"].is_null());
    let mut grants: BTreeSet<(String, String)> = BTreeSet::new();
    for policy in list(&role["Properties"]["Policies"]) {
        for s in list(&policy["PolicyDocument"]["Statement"]) {
            assert_eq!(s["Effect"].as_str(), Some("Allow"));
            for action in list(&s["Action"]) {
                for resource in list(&s["Resource"]) {
                    let (tag, value) = tagged(resource).expect("a resource of this stack");
                    grants.insert((
                        action.as_str().expect("action").to_owned(),
                        format!("{tag} {value}"),
                    ));
                }
            }
        }
    }
    let want: BTreeSet<(String, String)> = [
        ("dynamodb:Query", "!GetAtt AggregatesTable.Arn".to_owned()),
        ("dynamodb:Scan", "!GetAtt AggregatesTable.Arn".to_owned()),
        (
            "dynamodb:Query",
            format!("!Sub ${{AlertsTable.Arn}}/index/{BY_WINDOW_INDEX}"),
        ),
        (
            "logs:CreateLogStream",
            "!GetAtt QueryLogGroup.Arn".to_owned(),
        ),
        ("logs:PutLogEvents", "!GetAtt QueryLogGroup.Arn".to_owned()),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_owned(), r))
    .collect();
    assert_eq!(grants, want);
}

#[test]
fn the_alerts_index_is_the_one_provisioning_creates() {
    let t = template();
    let table = &t["Resources"][ALERTS_TABLE.logical_id]["Properties"];
    let indexes = list(&table["GlobalSecondaryIndexes"]);
    let defs: Vec<_> = INDEXES
        .iter()
        .filter(|i| i.table == ALERTS_TABLE.logical_id)
        .collect();
    assert_eq!(indexes.len(), defs.len());
    for def in defs {
        let index = indexes
            .iter()
            .find(|i| i["IndexName"].as_str() == Some(def.name))
            .expect("the index");
        let keys: Vec<(&str, &str)> = list(&index["KeySchema"])
            .iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().expect("name"),
                    k["KeyType"].as_str().expect("type"),
                )
            })
            .collect();
        assert_eq!(keys, [(def.partition_key, "HASH"), (def.sort_key, "RANGE")]);
        assert_eq!(index["Projection"]["ProjectionType"].as_str(), Some("ALL"));
        for key in [def.partition_key, def.sort_key] {
            assert!(
                list(&table["AttributeDefinitions"]).iter().any(|a| {
                    a["AttributeName"].as_str() == Some(key)
                        && a["AttributeType"].as_str() == Some("S")
                }),
                "{key} is defined as a string"
            );
        }
    }
}
