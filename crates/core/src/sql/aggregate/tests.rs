//! Expected values come from Flink 2.3.0 (PyFlink, batch mode, parallelism 1, UTC), run
//! on a source `src (k STRING, ms BIGINT, i INT, b BIGINT, f FLOAT, d DOUBLE,
//! m DECIMAL(10, 2), m8 DECIMAL(20, 8), big DECIMAL(38, 0), d6 DECIMAL(12, 6), s STRING,
//! t TIMESTAMP(3), tl TIMESTAMP_LTZ(3), bo BOOLEAN)` with views
//! `SELECT k, COUNT(*), COUNT(c), SUM(c), AVG(c), MIN(c), MAX(c), STDDEV_POP(c),
//! STDDEV_SAMP(c), VAR_POP(c), VAR_SAMP(c) FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(et),
//! INTERVAL '10' SECOND)) GROUP BY window_start, window_end, k` for each column `c`
//! ("probe 1"), and the same aggregates one function per view ("probe 2"), the events of
//! each group `k` in one window; "probe 3" is the AVGs alone over probe 1's events.
//! Result types were read from the resolved schema.
//! `EXPLAIN` showed the plan: VAR/STDDEV are `$WELFORD_M2$1` (Flink's
//! `WelfordM2AggFunction`, DOUBLE) then `CAST(m2 / n AS <type>)` or
//! `POWER(m2 / n, 0.5)`.

use proptest::prelude::*;

use super::*;

fn dec(precision: u8, scale: u8) -> SqlType {
    SqlType::Decimal { precision, scale }
}

fn d(text: &str) -> Value {
    Value::Decimal(Decimal::parse(text).expect(text))
}

fn kind(function: &str, arg: &SqlType) -> AggregateKind {
    AggregateKind::new(function, Some(arg)).expect(function)
}

fn fold(kind: &AggregateKind, values: &[Value]) -> AggregateState {
    let mut state = kind.empty();
    for v in values {
        kind.add(&mut state, v)
            .expect("value of the argument's type");
    }
    state
}

/// Checks each `function(arg)` over `values` against Flink's value: exactly (Debug text,
/// so a decimal's scale counts), doubles within 1e-12 relative; and that the result fits
/// the result type.
fn check(arg: &SqlType, values: &[Value], expected: &[(&str, Value)]) {
    for (function, want) in expected {
        let kind = kind(function, arg);
        let got = kind.result(&fold(&kind, values));
        assert!(
            got.fits(kind.result_type()),
            "{function}({arg}): {got:?} is not a {}",
            kind.result_type()
        );
        let same = match (&got, want) {
            (Value::Double(a), Value::Double(b)) => (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            _ => format!("{got:?}") == format!("{want:?}"),
        };
        assert!(
            same,
            "{function}({arg}) over {values:?}: got {got:?}, Flink {want:?}"
        );
    }
}

fn ints(xs: &[Option<i32>]) -> Vec<Value> {
    xs.iter()
        .map(|x| x.map_or(Value::Null, Value::Int))
        .collect()
}

fn bigints(xs: &[Option<i64>]) -> Vec<Value> {
    xs.iter()
        .map(|x| x.map_or(Value::Null, Value::BigInt))
        .collect()
}

fn doubles(xs: &[f64]) -> Vec<Value> {
    xs.iter().map(|&x| Value::Double(x)).collect()
}

fn decimals(xs: &[&str]) -> Vec<Value> {
    xs.iter().map(|x| d(x)).collect()
}

const I: Value = Value::Null;

#[test]
fn result_types_are_flinks() {
    // Probe 1, resolved schema: COUNT BIGINT NOT NULL; SUM INT/BIGINT/FLOAT/DOUBLE and
    // DECIMAL(38, s); AVG, VAR_*, STDDEV_* the argument's type, DECIMAL(38, max(6, s));
    // MIN/MAX the argument's type (DECIMAL(10, 2) stays DECIMAL(10, 2)).
    let all = [
        "SUM",
        "AVG",
        "STDDEV_POP",
        "STDDEV_SAMP",
        "VAR_POP",
        "VAR_SAMP",
    ];
    for (arg, sum, avg) in [
        (SqlType::Int, SqlType::Int, SqlType::Int),
        (SqlType::BigInt, SqlType::BigInt, SqlType::BigInt),
        (SqlType::Float, SqlType::Float, SqlType::Float),
        (SqlType::Double, SqlType::Double, SqlType::Double),
        (dec(10, 2), dec(38, 2), dec(38, 6)),
        (dec(20, 8), dec(38, 8), dec(38, 8)),
        (dec(38, 0), dec(38, 0), dec(38, 6)),
        (dec(12, 6), dec(38, 6), dec(38, 6)),
    ] {
        for f in all {
            let want = if f == "SUM" { &sum } else { &avg };
            assert_eq!(kind(f, &arg).result_type(), want, "{f}({arg})");
            assert!(kind(f, &arg).result_nullable());
        }
        for f in ["MIN", "MAX"] {
            assert_eq!(kind(f, &arg).result_type(), &arg);
        }
        assert_eq!(kind("count", &arg).result_type(), &SqlType::BigInt);
        assert!(!kind("COUNT", &arg).result_nullable());
    }
    let star = AggregateKind::new("COUNT", None).expect("COUNT(*)");
    assert_eq!(star.function(), AggregateFunction::CountStar);
    assert_eq!(star.result_type(), &SqlType::BigInt);
    for arg in [
        SqlType::String,
        SqlType::Boolean,
        SqlType::Timestamp { precision: 3 },
        SqlType::TimestampLtz { precision: 3 },
    ] {
        assert_eq!(kind("MIN", &arg).result_type(), &arg);
        assert_eq!(kind("MAX", &arg).result_type(), &arg);
    }
}

#[test]
fn unsupported_calls_are_refused_with_a_reason() {
    let row = SqlType::Row(vec![]);
    for (function, arg, needle) in [
        ("SUM", Some(SqlType::String), "SUM needs a numeric argument"),
        (
            "AVG",
            Some(SqlType::Boolean),
            "AVG needs a numeric argument",
        ),
        (
            "VAR_POP",
            Some(SqlType::Timestamp { precision: 3 }),
            "not TIMESTAMP(3)",
        ),
        ("MIN", Some(row.clone()), "MIN of a ROW is not supported"),
        ("SUM", None, "SUM needs an argument"),
        (
            "MEDIAN",
            Some(SqlType::Int),
            "aggregate function MEDIAN is not supported",
        ),
    ] {
        let e = AggregateKind::new(function, arg.as_ref()).expect_err(function);
        assert!(e.to_string().contains(needle), "{function}: {e}");
    }
    // COUNT takes any argument, a ROW too.
    assert!(AggregateKind::new("COUNT", Some(&row)).is_ok());
}

#[test]
fn int_aggregates_match_flink() {
    // Probe 1, k = basic: i = 1, 2, 4, NULL.
    let basic = ints(&[Some(1), Some(2), Some(4), None]);
    check(
        &SqlType::Int,
        &basic,
        &[
            ("COUNT", Value::BigInt(3)),
            ("SUM", Value::Int(7)),
            ("AVG", Value::Int(2)),
            ("MIN", Value::Int(1)),
            ("MAX", Value::Int(4)),
            ("STDDEV_POP", Value::Int(1)),
            ("STDDEV_SAMP", Value::Int(1)),
            ("VAR_POP", Value::Int(1)),
            ("VAR_SAMP", Value::Int(2)),
        ],
    );
    let star = AggregateKind::new("COUNT", None).expect("COUNT(*)");
    assert_eq!(star.result(&fold(&star, &basic)), Value::BigInt(4));
    // k = neg: -7, 2: AVG truncates toward zero; VAR 20.25 → 20, 40.5 → 40.
    check(
        &SqlType::Int,
        &ints(&[Some(-7), Some(2)]),
        &[
            ("SUM", Value::Int(-5)),
            ("AVG", Value::Int(-2)),
            ("STDDEV_POP", Value::Int(4)),
            ("STDDEV_SAMP", Value::Int(6)),
            ("VAR_POP", Value::Int(20)),
            ("VAR_SAMP", Value::Int(40)),
        ],
    );
    // k = wrap: 2147483647, 1, 1: SUM wraps; VAR (1.02e18 as a double) saturates to
    // INT's maximum; STDDEV is the true value truncated.
    check(
        &SqlType::Int,
        &ints(&[Some(i32::MAX), Some(1), Some(1)]),
        &[
            ("SUM", Value::Int(-2147483647)),
            ("STDDEV_POP", Value::Int(1012333499)),
            ("STDDEV_SAMP", Value::Int(1239850261)),
            ("VAR_POP", Value::Int(i32::MAX)),
            ("VAR_SAMP", Value::Int(i32::MAX)),
        ],
    );
    // Probe 2, AVG alone, k = avgov: 2147483647, 1 → 1073741824 (a BIGINT sum). Probe 1
    // showed -715827882 for (2147483647, 1, 1): with a VAR/STDDEV in the same view Flink
    // rewrites AVG(INT) as SUM(INT) / COUNT, whose INT sum wraps. Sluice follows AVG's
    // own semantics (documented difference).
    check(
        &SqlType::Int,
        &ints(&[Some(i32::MAX), Some(1)]),
        &[
            ("AVG", Value::Int(1073741824)),
            ("STDDEV_POP", Value::Int(1073741823)),
        ],
    );
    // Probe 3, `SELECT k, AVG(f), AVG(i), AVG(m), AVG(big), AVG(d6), AVG(d)` alone:
    // k = wrap 715827883, k = offset (1e9, 1e9+1, 1e9, 1e9+1) 1000000000.
    check(
        &SqlType::Int,
        &ints(&[Some(i32::MAX), Some(1), Some(1)]),
        &[("AVG", Value::Int(715827883))],
    );
    check(
        &SqlType::Int,
        &ints(&[
            Some(1_000_000_000),
            Some(1_000_000_001),
            Some(1_000_000_000),
            Some(1_000_000_001),
        ]),
        &[
            ("SUM", Value::Int(-294967294)),
            ("AVG", Value::Int(1_000_000_000)),
        ],
    );
    // k = one: 5: *_SAMP of one value is NULL; k = nulls: only NULLs.
    check(
        &SqlType::Int,
        &ints(&[Some(5)]),
        &[
            ("STDDEV_POP", Value::Int(0)),
            ("STDDEV_SAMP", Value::Null),
            ("VAR_POP", Value::Int(0)),
            ("VAR_SAMP", Value::Null),
        ],
    );
    let nulls = ints(&[None, None]);
    check(
        &SqlType::Int,
        &nulls,
        &[
            ("COUNT", Value::BigInt(0)),
            ("SUM", I),
            ("AVG", I),
            ("MIN", I),
            ("MAX", I),
            ("STDDEV_POP", I),
            ("STDDEV_SAMP", I),
            ("VAR_POP", I),
            ("VAR_SAMP", I),
        ],
    );
    assert_eq!(star.result(&fold(&star, &nulls)), Value::BigInt(2));
    // k = sq: 100000, 100001 (squares overflow INT; Flink works in doubles): VAR 0.25.
    check(
        &SqlType::Int,
        &ints(&[Some(100_000), Some(100_001)]),
        &[("SUM", Value::Int(200_001)), ("VAR_POP", Value::Int(0))],
    );
}

#[test]
fn filter_matching_nothing_gives_zero_counts_and_null_sums() {
    // Probe 1 view `filter`: COUNT(*) FILTER (WHERE i > 1000000000000) = 0, COUNT(i) with
    // the same filter = 0, SUM(i) FILTER (WHERE false) = NULL: the caller never adds.
    let star = AggregateKind::new("COUNT", None).expect("COUNT(*)");
    assert_eq!(star.result(&star.empty()), Value::BigInt(0));
    let count = kind("COUNT", &SqlType::Int);
    assert_eq!(count.result(&count.empty()), Value::BigInt(0));
    let sum = kind("SUM", &SqlType::Int);
    assert_eq!(sum.result(&sum.empty()), Value::Null);
}

#[test]
fn bigint_aggregates_match_flink() {
    // Probe 1, k = wrap: 9223372036854775807, 1, 1: SUM and AVG wrap (Flink's AVG(BIGINT)
    // sums in BIGINT); VAR saturates; STDDEV is the double truncated.
    check(
        &SqlType::BigInt,
        &bigints(&[Some(i64::MAX), Some(1), Some(1)]),
        &[
            ("SUM", Value::BigInt(-9223372036854775807)),
            ("AVG", Value::BigInt(-3074457345618258602)),
            ("MIN", Value::BigInt(1)),
            ("MAX", Value::BigInt(i64::MAX)),
            ("STDDEV_POP", Value::BigInt(4347939275110927360)),
            ("STDDEV_SAMP", Value::BigInt(5325116328314172416)),
            ("VAR_POP", Value::BigInt(i64::MAX)),
            ("VAR_SAMP", Value::BigInt(i64::MAX)),
        ],
    );
    // Probe 2, AVG alone, k = avgov: 9223372036854775807, 1 → -4611686018427387904.
    check(
        &SqlType::BigInt,
        &bigints(&[Some(i64::MAX), Some(1)]),
        &[("AVG", Value::BigInt(-4611686018427387904))],
    );
    // Probe 1, k = basic / neg / sq.
    check(
        &SqlType::BigInt,
        &bigints(&[Some(1), Some(2), Some(4), None]),
        &[
            ("COUNT", Value::BigInt(3)),
            ("SUM", Value::BigInt(7)),
            ("AVG", Value::BigInt(2)),
            ("VAR_SAMP", Value::BigInt(2)),
        ],
    );
    check(
        &SqlType::BigInt,
        &bigints(&[Some(-7), Some(2)]),
        &[("AVG", Value::BigInt(-2)), ("VAR_SAMP", Value::BigInt(40))],
    );
    check(
        &SqlType::BigInt,
        &bigints(&[Some(3037000500), Some(3037000501)]),
        &[
            ("SUM", Value::BigInt(6074001001)),
            ("AVG", Value::BigInt(3037000500)),
            ("VAR_POP", Value::BigInt(0)),
        ],
    );
}

#[test]
fn float_aggregates_match_flink() {
    // Probe 1, k = basic: f = 1.1, 2.1, 4.1 (as FLOAT). Every result is FLOAT.
    let f = |xs: &[f32]| xs.iter().map(|&x| Value::Float(x)).collect::<Vec<_>>();
    check(
        &SqlType::Float,
        &f(&[1.1, 2.1, 4.1]),
        &[
            ("SUM", Value::Float(7.2999997)),
            // Probe 3 (AVG alone): 2.4333334, from a DOUBLE sum. Probe 1 gave 2.4333332:
            // with a VAR/STDDEV in the view Flink computes SUM(FLOAT) / COUNT in floats.
            ("AVG", Value::Float(2.4333334)),
            ("MIN", Value::Float(1.1)),
            ("MAX", Value::Float(4.1)),
            ("STDDEV_POP", Value::Float(1.2472191)),
            ("STDDEV_SAMP", Value::Float(1.5275252)),
            ("VAR_POP", Value::Float(1.5555555)),
            ("VAR_SAMP", Value::Float(2.3333333)),
        ],
    );
    // k = offset: 10000, 10001, 10000, 10001: Welford, not sums of squares.
    check(
        &SqlType::Float,
        &f(&[1e4, 10001.0, 1e4, 10001.0]),
        &[
            ("SUM", Value::Float(40002.0)),
            ("AVG", Value::Float(10000.5)),
            ("STDDEV_POP", Value::Float(0.5)),
            ("STDDEV_SAMP", Value::Float(0.57735026)),
            ("VAR_POP", Value::Float(0.25)),
            ("VAR_SAMP", Value::Float(0.33333334)),
        ],
    );
    // Probe 2, k = fl: 0.1, 0.2, 0.3 → SUM 0.6, AVG 0.2.
    check(
        &SqlType::Float,
        &f(&[0.1, 0.2, 0.3]),
        &[("SUM", Value::Float(0.6)), ("AVG", Value::Float(0.2))],
    );
}

#[test]
fn double_aggregates_match_flink() {
    // Probe 1, k = basic: 1.1, 2.1, 4.1. Welford in Flink's order gives Flink's very
    // bits (the check allows 1e-12 relative; these agree exactly).
    check(
        &SqlType::Double,
        &doubles(&[1.1, 2.1, 4.1]),
        &[
            ("SUM", Value::Double(7.3)),
            ("AVG", Value::Double(2.433333333333333)),
            ("MIN", Value::Double(1.1)),
            ("MAX", Value::Double(4.1)),
            ("STDDEV_POP", Value::Double(1.247219128924647)),
            ("STDDEV_SAMP", Value::Double(1.5275252316519465)),
            ("VAR_POP", Value::Double(1.5555555555555551)),
            ("VAR_SAMP", Value::Double(2.3333333333333326)),
        ],
    );
    check(
        &SqlType::Double,
        &doubles(&[-7.0, 2.0]),
        &[
            ("SUM", Value::Double(-5.0)),
            ("AVG", Value::Double(-2.5)),
            ("STDDEV_POP", Value::Double(4.5)),
            ("STDDEV_SAMP", Value::Double(6.363961030678928)),
            ("VAR_POP", Value::Double(20.25)),
            ("VAR_SAMP", Value::Double(40.5)),
        ],
    );
    // k = offset: 1e9, 1e9+1, ...: a sum of squares would give 0 here.
    check(
        &SqlType::Double,
        &doubles(&[1e9, 1e9 + 1.0, 1e9, 1e9 + 1.0]),
        &[
            ("SUM", Value::Double(4000000002.0)),
            ("AVG", Value::Double(1000000000.5)),
            ("STDDEV_POP", Value::Double(0.5)),
            ("STDDEV_SAMP", Value::Double(0.5773502691896257)),
            ("VAR_POP", Value::Double(0.25)),
            ("VAR_SAMP", Value::Double(0.3333333333333333)),
        ],
    );
    // k = sq: 1e200 twice. Probe 2, k = fl: Flink adds in order, 0.1 + 0.2 + 0.3 =
    // 0.6000000000000001; the compensated sum gives 0.6 (within 1e-12).
    check(
        &SqlType::Double,
        &doubles(&[1e200, 1e200]),
        &[
            ("SUM", Value::Double(2e200)),
            ("VAR_SAMP", Value::Double(0.0)),
        ],
    );
    check(
        &SqlType::Double,
        &doubles(&[0.1, 0.2, 0.3]),
        &[("SUM", Value::Double(0.6000000000000001))],
    );
}

#[test]
fn decimal_aggregates_match_flink() {
    // Probe 1, column m DECIMAL(10, 2), k = basic: 1.10, 2.25, 4.00.
    check(
        &dec(10, 2),
        &decimals(&["1.10", "2.25", "4.00"]),
        &[
            ("SUM", d("7.35")),
            ("AVG", d("2.450000")),
            ("MIN", d("1.10")),
            ("MAX", d("4.00")),
            ("STDDEV_POP", d("1.192337")),
            ("STDDEV_SAMP", d("1.460308")),
            ("VAR_POP", d("1.421667")),
            ("VAR_SAMP", d("2.132500")),
        ],
    );
    // k = half: 0.01, 0.00; k = sq: 99999999.99, 99999999.98; probe 2, k = third.
    check(
        &dec(10, 2),
        &decimals(&["0.01", "0.00"]),
        &[
            ("AVG", d("0.005000")),
            ("STDDEV_POP", d("0.005000")),
            ("STDDEV_SAMP", d("0.007071")),
            ("VAR_POP", d("0.000025")),
            ("VAR_SAMP", d("0.000050")),
        ],
    );
    check(
        &dec(10, 2),
        &decimals(&["99999999.99", "99999999.98"]),
        &[
            ("SUM", d("199999999.97")),
            ("AVG", d("99999999.985000")),
            ("STDDEV_SAMP", d("0.007071")),
        ],
    );
    check(
        &dec(10, 2),
        &decimals(&["1.00", "1.00", "1.01"]),
        &[("AVG", d("1.003333")), ("STDDEV_SAMP", d("0.005774"))],
    );
    // m8 DECIMAL(20, 8): results DECIMAL(38, 8). k = one, wrap, half.
    check(
        &dec(20, 8),
        &decimals(&["5.12345678"]),
        &[
            ("SUM", d("5.12345678")),
            ("AVG", d("5.12345678")),
            ("STDDEV_POP", d("0.00000000")),
            ("STDDEV_SAMP", I),
        ],
    );
    check(
        &dec(20, 8),
        &decimals(&["999999999999.99999999", "999999999999.99999999"]),
        &[
            ("SUM", d("1999999999999.99999998")),
            ("AVG", d("999999999999.99999999")),
            ("VAR_POP", d("0.00000000")),
        ],
    );
    check(
        &dec(20, 8),
        &decimals(&["0.00000001", "0.00000000"]),
        &[("AVG", d("0.00000001")), ("STDDEV_POP", d("0.00000001"))],
    );
    // d6 DECIMAL(12, 6): AVG rounds half up, away from zero (probe 2, k = half and
    // neghalf: 0.0000005 → 0.000001, -0.0000005 → -0.000001); k = wrap shows the double
    // cast to DECIMAL through its shortest text (222222222221.33334 → ...333340).
    check(
        &dec(12, 6),
        &decimals(&["0.000001", "0.000000"]),
        &[("AVG", d("0.000001"))],
    );
    check(
        &dec(12, 6),
        &decimals(&["-0.000001", "0.000000"]),
        &[("AVG", d("-0.000001"))],
    );
    check(
        &dec(12, 6),
        &decimals(&["999999.999999", "999999.999999", "0.000001"]),
        &[
            ("SUM", d("1999999.999999")),
            ("AVG", d("666666.666666")),
            ("STDDEV_POP", d("471404.520790")),
            ("STDDEV_SAMP", d("577350.269188")),
            ("VAR_POP", d("222222222221.333340")),
            ("VAR_SAMP", d("333333333332.000000")),
        ],
    );
    // big DECIMAL(38, 0): k = basic, sq, probe 2 k = third.
    check(
        &dec(38, 0),
        &decimals(&["1", "2", "4"]),
        &[
            ("SUM", d("7")),
            ("AVG", d("2.333333")),
            ("STDDEV_POP", d("1.247219")),
            ("STDDEV_SAMP", d("1.527525")),
            ("VAR_POP", d("1.555556")),
            ("VAR_SAMP", d("2.333333")),
        ],
    );
    check(
        &dec(38, 0),
        &decimals(&["10000000000000000000", "10000000000000000001"]),
        &[
            ("SUM", d("20000000000000000001")),
            ("AVG", d("10000000000000000000.500000")),
            ("VAR_POP", d("0.000000")),
        ],
    );
    check(
        &dec(38, 0),
        &decimals(&["2", "0", "0"]),
        &[("AVG", d("0.666667"))],
    );
}

#[test]
fn decimal_sums_beyond_38_digits_are_null() {
    // Probe 2, SUM(big) alone, A = 38 nines. Flink adds in input order, a sum that
    // overflows becomes NULL and the next value starts it again:
    //   ov2: A, A → NULL;  ov3: A, A, 1 → 1;  ov4: A, -A, A → A;  ov5: A, A, -A → -A.
    // That depends on order, so no mergeable state can copy it. Sluice keeps the exact
    // sum: NULL when the total needs more than 38 digits, else the total (documented
    // difference for ov3 and ov5; ov2 and ov4 agree).
    let a = "9".repeat(38);
    let minus_a = format!("-{a}");
    let big = dec(38, 0);
    check(&big, &decimals(&[&a, &a]), &[("SUM", I), ("AVG", I)]);
    check(&big, &decimals(&[&a, &a, "1"]), &[("SUM", I)]);
    check(&big, &decimals(&[&a, &minus_a, &a]), &[("SUM", d(&a))]);
    check(&big, &decimals(&[&a, &a, &minus_a]), &[("SUM", d(&a))]);
    // Probe 1, k = wrap: AVG of A, A, -A is A / 3, which DECIMAL(38, 6) cannot hold: NULL.
    check(&big, &decimals(&[&a, &a, &minus_a]), &[("AVG", I)]);
    // The exact sum holds many more than 38 digits on its way.
    let kind = kind("SUM", &big);
    let mut state = kind.empty();
    for _ in 0..1000 {
        kind.add(&mut state, &d(&a)).expect("decimal");
    }
    for _ in 0..999 {
        kind.add(&mut state, &d(&minus_a)).expect("decimal");
    }
    assert_eq!(kind.result(&state), d(&a));
}

#[test]
fn decimal_average_rounds_twice_as_java_does() {
    // Java: new BigDecimal("10000000000000000004000004999999999999").divide(new
    // BigDecimal("9999999999999999999"), new MathContext(38, HALF_UP)).setScale(6,
    // HALF_UP) = 1000000000000000000.500001 (jshell, Java 17), where one rounding of the
    // exact quotient 1000000000000000000.50000049999999999995... gives .500000.
    let total: i128 = 10_000_000_000_000_000_004_000_004_999_999_999_999;
    let n = 9_999_999_999_999_999_999;
    let avg = average(total, 0, n).expect("fits");
    assert_eq!(avg.to_string(), "1000000000000000000.500001");
    assert_eq!(
        average(-total, 0, n).expect("fits").to_string(),
        "-1000000000000000000.500001"
    );
    assert_eq!(average(5, 6, 10).expect("fits").to_string(), "0.000001");
    assert_eq!(average(4, 6, 10).expect("fits").to_string(), "0.000000");
    assert_eq!(average(200, 2, 3).expect("fits").to_string(), "0.666667");
    assert!(average(MAX_DECIMAL, 0, 1).is_none(), "44 digits at scale 6");
}

#[test]
fn other_types_min_max_match_flink() {
    // Probe 1 view `other`, k = basic: s = s1, s2, s4; t = 00:00:01.250, ...;
    // bo = false, true, false.
    let ms = |s: i64| 1_767_225_600_000 + s * 1000 + 250;
    let cases = [
        (
            SqlType::String,
            vec![
                Value::string("s1"),
                Value::string("s2"),
                Value::string("s4"),
                I,
            ],
            Value::string("s1"),
            Value::string("s4"),
        ),
        (
            SqlType::Timestamp { precision: 3 },
            vec![
                Value::Timestamp(ms(1)),
                I,
                Value::Timestamp(ms(2)),
                Value::Timestamp(ms(4)),
            ],
            Value::Timestamp(ms(1)),
            Value::Timestamp(ms(4)),
        ),
        (
            SqlType::TimestampLtz { precision: 3 },
            vec![
                Value::TimestampLtz(ms(2)),
                Value::TimestampLtz(ms(1)),
                Value::TimestampLtz(ms(4)),
            ],
            Value::TimestampLtz(ms(1)),
            Value::TimestampLtz(ms(4)),
        ),
        (
            SqlType::Boolean,
            vec![
                Value::Boolean(false),
                Value::Boolean(true),
                Value::Boolean(false),
            ],
            Value::Boolean(false),
            Value::Boolean(true),
        ),
    ];
    for (arg, values, min, max) in cases {
        check(
            &arg,
            &values,
            &[("MIN", min), ("MAX", max), ("COUNT", Value::BigInt(3))],
        );
        check(
            &arg,
            &[I, I],
            &[("MIN", I), ("MAX", I), ("COUNT", Value::BigInt(0))],
        );
    }
}

#[test]
fn doubles_order_as_java_compares_them() {
    let values = doubles(&[0.0, -0.0, f64::NAN, 1.0, f64::NEG_INFINITY]);
    let min = kind("MIN", &SqlType::Double);
    let max = kind("MAX", &SqlType::Double);
    assert_eq!(
        min.result(&fold(&min, &values)),
        Value::Double(f64::NEG_INFINITY)
    );
    let top = max.result(&fold(&max, &values));
    assert!(matches!(top, Value::Double(x) if x.is_nan()), "{top:?}");
    let zeros = doubles(&[0.0, -0.0]);
    let low = min.result(&fold(&min, &zeros));
    assert!(matches!(low, Value::Double(x) if x == 0.0 && x.is_sign_negative()));
}

#[test]
fn decimals_of_another_scale_are_rescaled_and_wrong_types_refused() {
    let sum = kind("SUM", &dec(10, 2));
    let state = fold(&sum, &decimals(&["1.5", "2.25"]));
    assert_eq!(
        format!("{:?}", sum.result(&state)),
        format!("{:?}", d("3.75"))
    );
    let max = kind("MAX", &dec(10, 2));
    assert_eq!(
        format!("{:?}", max.result(&fold(&max, &[d("7")]))),
        format!("{:?}", d("7.00"))
    );
    let e = sum
        .add(&mut sum.empty(), &Value::Int(1))
        .expect_err("INT into SUM(DECIMAL)");
    assert!(
        e.to_string().contains("SUM over DECIMAL(10, 2) was given"),
        "{e}"
    );
    let e = max
        .add(&mut max.empty(), &Value::string("x"))
        .expect_err("STRING into MAX(DECIMAL)");
    assert!(matches!(e, AggregateError::WrongValue { .. }));
    let other = kind("COUNT", &SqlType::Int).empty();
    assert!(sum.merge(&mut sum.empty(), &other).is_err());
    assert!(sum.add(&mut other.clone(), &Value::Null).is_err());
}

#[test]
fn sum_of_int_wraps_whatever_the_merge_order() {
    let kind = kind("SUM", &SqlType::Int);
    let values = ints(&[
        Some(i32::MAX),
        Some(1),
        Some(i32::MAX),
        Some(5),
        Some(i32::MIN),
        Some(-3),
    ]);
    let want = values.iter().fold(0i32, |acc, v| match v {
        Value::Int(x) => acc.wrapping_add(*x),
        _ => acc,
    });
    assert_eq!(kind.result(&fold(&kind, &values)), Value::Int(want));
    for split in 0..=values.len() {
        let (a, b) = values.split_at(split);
        for (x, y) in [(a, b), (b, a)] {
            let mut state = fold(&kind, x);
            kind.merge(&mut state, &fold(&kind, y)).expect("same kind");
            assert_eq!(kind.result(&state), Value::Int(want), "split at {split}");
        }
    }
}

// --- stored form --------------------------------------------------------------------------

fn round_trip(kind: &AggregateKind, state: &AggregateState) -> AggregateState {
    let text = state.to_json();
    assert!(
        text.len() <= kind.max_state_bytes(64),
        "{text} ({} bytes) > {}",
        text.len(),
        kind.max_state_bytes(64)
    );
    kind.state_from_json(&text).expect(&text)
}

#[test]
fn stored_states_read_back_and_stay_within_their_bounds() {
    let a = "9".repeat(38);
    let tiny = format!("-0.{}", "9".repeat(38));
    let cases: Vec<(&str, SqlType, Vec<Value>)> = vec![
        ("COUNT", SqlType::Int, ints(&[Some(1), None])),
        ("SUM", SqlType::Int, ints(&[Some(i32::MIN), Some(-1)])),
        (
            "AVG",
            SqlType::BigInt,
            bigints(&[Some(i64::MIN), Some(i64::MIN), Some(1)]),
        ),
        (
            "SUM",
            SqlType::Double,
            doubles(&[-2.2250738585072014e-308, 1e300, -1e-300]),
        ),
        ("AVG", SqlType::Double, doubles(&[f64::INFINITY, 1.0])),
        (
            "SUM",
            SqlType::Double,
            doubles(&[f64::INFINITY, f64::NEG_INFINITY]),
        ),
        (
            "VAR_SAMP",
            SqlType::Double,
            doubles(&[-1.7976931348623157e308, 3.0, 1e-310]),
        ),
        ("SUM", dec(38, 0), decimals(&[&a, &a, &a, &format!("-{a}")])),
        (
            "SUM",
            dec(38, 0),
            decimals(&[&format!("-{a}"), &format!("-{a}")]),
        ),
        ("AVG", dec(38, 38), decimals(&[&tiny])),
        ("MIN", dec(38, 38), decimals(&[&tiny])),
        (
            "MAX",
            SqlType::Float,
            vec![Value::Float(0.1), Value::Float(f32::MIN_POSITIVE)],
        ),
        ("MAX", SqlType::Double, doubles(&[f64::NAN])),
        ("MIN", SqlType::BigInt, bigints(&[Some(i64::MIN)])),
        ("MAX", SqlType::Int, ints(&[Some(i32::MIN)])),
        ("MIN", SqlType::Boolean, vec![Value::Boolean(false)]),
        (
            "MAX",
            SqlType::String,
            vec![Value::string(&"\u{1}\"\\é".repeat(12))],
        ),
        (
            "MIN",
            SqlType::Timestamp { precision: 3 },
            vec![Value::Timestamp(i64::MIN)],
        ),
        (
            "MAX",
            SqlType::TimestampLtz { precision: 3 },
            vec![Value::TimestampLtz(-1)],
        ),
        ("MAX", SqlType::String, vec![]),
    ];
    for (function, arg, values) in cases {
        let kind = kind(function, &arg);
        for state in [kind.empty(), fold(&kind, &values)] {
            let back = round_trip(&kind, &state);
            // NaN ≠ NaN: compare the stored texts.
            assert_eq!(back.to_json(), state.to_json(), "{function}({arg})");
            assert_eq!(
                format!("{:?}", kind.result(&back)),
                format!("{:?}", kind.result(&state))
            );
        }
    }
    // The widest layouts reach their bounds' neighbourhood (the bounds are not loose).
    let count = kind("COUNT", &SqlType::Int);
    let full = AggregateState(State::Count(u64::MAX));
    assert_eq!(full.to_json().len(), count.max_state_bytes(0));
    let moments = kind("VAR_POP", &SqlType::Double);
    let worst = AggregateState(State::Moments {
        n: u64::MAX,
        mean: -2.2250738585072014e-308,
        m2: -2.2250738585072014e-308,
    });
    assert_eq!(worst.to_json().len(), moments.max_state_bytes(0));
    let sum = kind("SUM", &dec(38, 2));
    let widest = AggregateState(State::Decimal {
        n: u64::MAX,
        sum: WideSum {
            hi: -i64::MAX,
            lo: -(WIDE_BASE - 1),
        },
    });
    assert_eq!(widest.to_json().len(), sum.max_state_bytes(0));
    assert_eq!(
        sum.state_from_json(&widest.to_json()).expect("reads"),
        widest
    );
    assert!(kind("MAX", &SqlType::String).max_state_bytes(1000) <= 6_014);
}

#[test]
fn stored_states_of_another_aggregate_are_refused() {
    let sum = kind("SUM", &SqlType::Int);
    let text = fold(&kind("COUNT", &SqlType::Int), &ints(&[Some(1)])).to_json();
    assert_eq!(text, r#"{"c":1}"#);
    let e = sum.state_from_json(&text).expect_err("count state");
    assert!(
        e.to_string()
            .starts_with("stored state of SUM is malformed"),
        "{e}"
    );
    let min = kind("MIN", &SqlType::Int);
    assert!(min.state_from_json(r#"{"x":{"s":"a"}}"#).is_err());
    assert!(min.state_from_json(r#"{"x":{"i":3}}"#).is_ok());
    let dsum = kind("SUM", &dec(10, 2));
    assert!(dsum.state_from_json(r#"{"d":[1,"12a"]}"#).is_err());
    assert!(dsum.state_from_json(r#"{"d":[1,"-12"]}"#).is_ok());
    let avg = kind("AVG", &SqlType::Double);
    assert!(
        avg.state_from_json(r#"{"f":[1,"NaN","-Infinity"]}"#)
            .is_ok()
    );
    assert!(avg.state_from_json(r#"{"f":[1,"nope",0]}"#).is_err());
    assert!(avg.state_from_json("not json").is_err());
}

#[test]
fn stored_forms_are_stable() {
    // These texts are in DynamoDB items: changing one is a new tag, not a new meaning.
    let k = |f: &str, t: &SqlType, v: &[Value]| fold(&kind(f, t), v).to_json();
    assert_eq!(
        k("COUNT", &SqlType::Int, &ints(&[Some(1), None, Some(2)])),
        r#"{"c":2}"#
    );
    assert_eq!(
        k("SUM", &SqlType::Int, &ints(&[Some(3), Some(4)])),
        r#"{"i":[2,7]}"#
    );
    assert_eq!(
        k("AVG", &SqlType::Double, &doubles(&[0.5, 1.0])),
        r#"{"f":[2,1.5,0.0]}"#
    );
    assert_eq!(
        k("SUM", &dec(10, 2), &decimals(&["1.10", "2.25", "4.00"])),
        r#"{"d":[3,"735"]}"#
    );
    assert_eq!(
        k("VAR_POP", &SqlType::Double, &doubles(&[1.0, 3.0])),
        r#"{"m":[2,2.0,2.0]}"#
    );
    assert_eq!(
        k("MIN", &SqlType::String, &[Value::string("abc")]),
        r#"{"x":{"s":"abc"}}"#
    );
    assert_eq!(
        k("MAX", &dec(10, 2), &decimals(&["-1.50"])),
        r#"{"x":{"n":"-1.50"}}"#
    );
    assert_eq!(k("MAX", &SqlType::Int, &[]), r#"{"x":null}"#);
}

#[test]
fn wide_sums_print_and_parse_canonically() {
    let mut s = WideSum::ZERO;
    s.add(MAX_DECIMAL);
    s.add(MAX_DECIMAL);
    assert_eq!(s.to_text(), format!("1{}8", "9".repeat(37)));
    s.add(-MAX_DECIMAL);
    s.add(-MAX_DECIMAL);
    s.add(-5);
    assert_eq!(s, WideSum { hi: 0, lo: -5 });
    for text in [
        "0",
        "-5",
        "12345678901234567890123456789012345678901234567890",
        "-10000000000000000000000000000000000000",
    ] {
        let w = WideSum::parse(text).expect(text);
        assert_eq!(w.to_text(), text);
    }
}

// --- merging in any grouping ----------------------------------------------------------------

/// Splits `values` in three at the cuts, stores each part's state (JSON round trip) and
/// merges them three ways; each must read as the state of all values added in order.
fn merged_results(
    kind: &AggregateKind,
    values: &[Value],
    cut1: usize,
    cut2: usize,
) -> Vec<AggregateState> {
    let n = values.len();
    let (a, b) = (cut1.min(n), cut2.min(n));
    let (lo, hi) = (a.min(b), a.max(b));
    let part = |r: &[Value]| round_trip(kind, &fold(kind, r));
    let (x, y, z) = (
        part(&values[..lo]),
        part(&values[lo..hi]),
        part(&values[hi..]),
    );
    let merged = |first: &AggregateState, rest: &[&AggregateState]| {
        let mut s = first.clone();
        for r in rest {
            kind.merge(&mut s, r).expect("same kind");
        }
        s
    };
    let yz = merged(&y, &[&z]);
    vec![
        merged(&x, &[&y, &z]),
        merged(&x, &[&yz]),
        merged(&z, &[&x, &y]),
        merged(&kind.empty(), &[&y, &kind.empty(), &x, &z]),
    ]
}

const EXACT: [&str; 7] = ["COUNT", "SUM", "AVG", "MIN", "MAX", "COUNT*", "VAR_POP"];

fn kinds_for(arg: &SqlType, exact_only: bool) -> Vec<AggregateKind> {
    EXACT
        .iter()
        .filter(|f| !(exact_only && **f == "VAR_POP"))
        .map(|f| match *f {
            "COUNT*" => AggregateKind::new("COUNT", None).expect("COUNT(*)"),
            f => kind(f, arg),
        })
        .collect()
}

fn opt<T>(x: Option<T>, f: impl Fn(T) -> Value) -> Value {
    x.map_or(Value::Null, f)
}

/// The Welford state's variance, for comparing within a tolerance.
fn var_of(state: &AggregateState) -> f64 {
    match state.0 {
        State::Moments { n, m2, .. } if n > 0 => m2 / n as f64,
        _ => 0.0,
    }
}

proptest! {
    #[test]
    fn integer_and_decimal_merges_are_exact(
        ints in prop::collection::vec(prop::option::weighted(0.9, any::<i32>()), 0..40),
        longs in prop::collection::vec(prop::option::weighted(0.9, any::<i64>()), 0..40),
        decs in prop::collection::vec(prop::option::weighted(0.9, -MAX_DECIMAL..=MAX_DECIMAL), 0..40),
        strings in prop::collection::vec(prop::option::of("[a-c\u{e9}]{0,4}"), 0..20),
        cut1 in 0usize..40,
        cut2 in 0usize..40,
    ) {
        let cases: Vec<(SqlType, Vec<Value>)> = vec![
            (SqlType::Int, ints.iter().map(|x| opt(*x, Value::Int)).collect()),
            (SqlType::BigInt, longs.iter().map(|x| opt(*x, Value::BigInt)).collect()),
            (dec(38, 2), decs.iter().map(|x| opt(*x, |u| Value::Decimal(Decimal::new(u, 2)))).collect()),
            (dec(12, 3), decs.iter().map(|x| opt(*x, |u| Value::Decimal(Decimal::new(u % 10i128.pow(12), 3)))).collect()),
        ];
        for (arg, values) in cases {
            for kind in kinds_for(&arg, true) {
                let want = format!("{:?}", kind.result(&fold(&kind, &values)));
                for s in merged_results(&kind, &values, cut1, cut2) {
                    prop_assert_eq!(&format!("{:?}", kind.result(&s)), &want, "{:?}", kind);
                }
            }
        }
        let values: Vec<Value> = strings.iter().map(|s| opt(s.as_deref(), Value::string)).collect();
        for f in ["MIN", "MAX"] {
            let kind = kind(f, &SqlType::String);
            let want = kind.result(&fold(&kind, &values));
            for s in merged_results(&kind, &values, cut1, cut2) {
                prop_assert_eq!(kind.result(&s), want.clone());
            }
        }
    }

    #[test]
    fn double_merges_agree_within_rounding(
        values in prop::collection::vec(prop::option::weighted(0.9, -1e6f64..1e6), 0..60),
        cut1 in 0usize..60,
        cut2 in 0usize..60,
    ) {
        let values: Vec<Value> = values.iter().map(|x| opt(*x, Value::Double)).collect();
        let xs: Vec<f64> = values.iter().filter_map(|v| match v { Value::Double(x) => Some(*x), _ => None }).collect();
        let scale = xs.iter().map(|x| x.abs()).sum::<f64>().max(1.0);
        let mean_square = xs.iter().map(|x| x * x).sum::<f64>() / xs.len().max(1) as f64;
        for kind in kinds_for(&SqlType::Double, false) {
            let sequential = fold(&kind, &values);
            let want = kind.result(&sequential);
            for s in merged_results(&kind, &values, cut1, cut2) {
                match (kind.result(&s), &want) {
                    (Value::Double(a), Value::Double(b)) if kind.function() == AggregateFunction::VarPop => {
                        prop_assert!((a - b).abs() <= 1e-12 * mean_square.max(1.0), "{a} vs {b}");
                        prop_assert!((var_of(&s) - var_of(&sequential)).abs() <= 1e-12 * mean_square.max(1.0));
                    }
                    (Value::Double(a), Value::Double(b)) => {
                        prop_assert!((a - b).abs() <= 1e-12 * scale, "{:?}: {a} vs {b}", kind);
                    }
                    (got, want) => prop_assert_eq!(format!("{got:?}"), format!("{want:?}")),
                }
            }
        }
        // Against the naive sum in input order (Flink's): within 1e-9 of the magnitude.
        let sum = kind("SUM", &SqlType::Double);
        if let Value::Double(total) = sum.result(&fold(&sum, &values)) {
            let naive: f64 = xs.iter().sum();
            prop_assert!((total - naive).abs() <= 1e-9 * scale);
        }
    }

    #[test]
    fn variance_of_integers_merges_within_rounding(
        values in prop::collection::vec(any::<i32>(), 1..40),
        cut1 in 0usize..40,
        cut2 in 0usize..40,
    ) {
        let values: Vec<Value> = values.into_iter().map(Value::Int).collect();
        let kind = kind("VAR_SAMP", &SqlType::Int);
        let sequential = fold(&kind, &values);
        for s in merged_results(&kind, &values, cut1, cut2) {
            let (a, b) = (var_of(&s), var_of(&sequential));
            prop_assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}

// --- APPROX_PERCENTILE ------------------------------------------------------------------

/// The exact lower nearest-rank value: rank ⌊p · (n − 1)⌋ of the sorted values.
fn lower_nearest_rank(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(p * (sorted.len() - 1) as f64).floor() as usize]
}

#[test]
fn approx_percentile_is_a_double_planned_with_its_fraction_and_refuses_the_rest() {
    let p99 = AggregateKind::percentile(&SqlType::BigInt, 0.99).expect("planned");
    assert_eq!(p99.result_type(), &SqlType::Double);
    assert!(p99.result_nullable());
    assert_eq!(p99.function().name(), "APPROX_PERCENTILE");
    assert_ne!(
        p99,
        AggregateKind::percentile(&SqlType::BigInt, 0.5).expect("planned")
    );
    for (arg, p, needle) in [
        (SqlType::Double, 1.5, "from 0 to 1, not 1.5"),
        (SqlType::Double, -0.1, "from 0 to 1"),
        (SqlType::Double, f64::NAN, "from 0 to 1"),
        (SqlType::String, 0.5, "needs a numeric argument"),
    ] {
        let e = AggregateKind::percentile(&arg, p).expect_err("refused");
        assert!(e.to_string().contains(needle), "{e}");
    }
    for name in ["APPROX_PERCENTILE", "percentile_approx"] {
        let e = AggregateKind::new(name, Some(&SqlType::Double)).expect_err(name);
        assert!(e.to_string().contains("a column and a percentile"), "{e}");
    }
}

#[test]
fn approx_percentile_skips_nulls_and_non_finite_values_and_is_null_over_none() {
    let median = AggregateKind::percentile(&SqlType::Double, 0.5).expect("planned");
    let state = fold(
        &median,
        &[
            Value::Null,
            Value::Double(f64::NAN),
            Value::Double(f64::INFINITY),
        ],
    );
    assert_eq!(median.result(&state), Value::Null);
    let ints = AggregateKind::percentile(&SqlType::Int, 0.0).expect("planned");
    let state = fold(
        &ints,
        &[Value::Int(-7), Value::Null, Value::Int(0), Value::Int(3)],
    );
    let Value::Double(low) = ints.result(&state) else {
        panic!("a double")
    };
    assert!((low + 7.0).abs() <= 0.07, "{low}");
    let decimals = AggregateKind::percentile(&dec(10, 2), 1.0).expect("planned");
    let state = fold(&decimals, &[d("1.50"), d("250.25")]);
    let Value::Double(high) = decimals.result(&state) else {
        panic!("a double")
    };
    assert!((high - 250.25).abs() <= 2.5025, "{high}");
    // A value of another type is a planning bug, not a skipped value.
    assert!(median.add(&mut median.empty(), &Value::Int(1)).is_err());
}

proptest! {
    /// Within 1% of the exact lower nearest-rank value, however the values are split
    /// into merged states and in whatever order; the stored form reads back the same.
    #[test]
    fn approx_percentile_is_within_one_percent_whatever_the_merges(
        values in prop::collection::vec(
            prop_oneof![
                (-12.0..12.0f64).prop_map(f64::exp),
                (-12.0..12.0f64).prop_map(|e| -e.exp()),
                Just(0.0),
                (1i32..20).prop_map(f64::from),
            ],
            1..300,
        ),
        p in 0.0..=1.0f64,
        split in 0usize..300,
    ) {
        let kind = AggregateKind::percentile(&SqlType::Double, p).expect("planned");
        let doubles: Vec<Value> = values.iter().map(|&x| Value::Double(x)).collect();
        let split = split.min(doubles.len());
        let (x, y) = doubles.split_at(split);
        let mut state = fold(&kind, y);
        kind.merge(&mut state, &fold(&kind, x)).expect("same kind");
        let state = round_trip(&kind, &state);
        prop_assert_eq!(&state, &fold(&kind, &doubles));
        let Value::Double(got) = kind.result(&state) else {
            panic!("a double over values");
        };
        let exact = lower_nearest_rank(&values, p);
        prop_assert!((got - exact).abs() <= 0.01 * exact.abs() * (1.0 + 1e-12), "{} against {}", got, exact);
    }
}

#[test]
fn approx_percentile_states_are_checked_when_read() {
    let kind = AggregateKind::percentile(&SqlType::Double, 0.5).expect("planned");
    let state = kind
        .state_from_json(r#"{"q":{"p":{"o":3,"c":[2,1]},"z":1}}"#)
        .expect("a sketch");
    assert!(matches!(kind.result(&state), Value::Double(_)));
    for bad in [
        r#"{"c":3}"#,
        r#"{"q":{"p":{"o":2147483647,"c":[1,1]},"z":0}}"#,
    ] {
        assert!(kind.state_from_json(bad).is_err(), "{bad}");
    }
    assert!(kind.max_state_bytes(0) > 80_000 && kind.max_state_bytes(0) < 90_000);
}

// --- APPROX_COUNT_DISTINCT ---------------------------------------------------------------

#[test]
fn approx_count_distinct_is_a_bigint_not_null_that_skips_nulls() {
    let users = kind("APPROX_COUNT_DISTINCT", &SqlType::String);
    assert_eq!(users.result_type(), &SqlType::BigInt);
    assert!(!users.result_nullable());
    assert_eq!(users.result(&users.empty()), Value::BigInt(0));
    let s = |x: &str| Value::String(Arc::from(x));
    let state = fold(&users, &[s("a"), Value::Null, s("b"), s("a"), s("")]);
    assert_eq!(users.result(&state), Value::BigInt(3));
    let state = round_trip(&users, &state);
    assert_eq!(users.result(&state), Value::BigInt(3));
    // Doubles count -0.0 as 0.0, as DataSketches canonicalizes them.
    let values = kind("APPROX_COUNT_DISTINCT", &SqlType::Double);
    let state = fold(
        &values,
        &[Value::Double(0.0), Value::Double(-0.0), Value::Double(1.5)],
    );
    assert_eq!(values.result(&state), Value::BigInt(2));
    let row = SqlType::Row(vec![]);
    let e = AggregateKind::new("APPROX_COUNT_DISTINCT", Some(&row)).expect_err("a ROW");
    assert!(e.to_string().contains("of a ROW is not supported"), "{e}");
    assert!(
        users
            .state_from_json(r#"{"h":"bm90IGEgc2tldGNo"}"#)
            .is_err(),
        "not a sketch"
    );
    assert!(users.max_state_bytes(0) > 5_000 && users.max_state_bytes(0) < 6_000);
}

#[test]
fn exact_answers_are_the_lower_nearest_rank_and_the_distinct_count() {
    use crate::sql::exact::{DISTINCT_TOLERANCE, PERCENTILE_TOLERANCE};
    let median = AggregateKind::percentile(&SqlType::BigInt, 0.5).expect("a percentile");
    let ints = |xs: &[i64]| xs.iter().map(|&x| Value::BigInt(x)).collect::<Vec<_>>();
    assert_eq!(
        median.exact_result(&ints(&[4, 1, 3, 2])),
        Some(Value::Double(2.0))
    );
    assert_eq!(median.exact_result(&ints(&[-7])), Some(Value::Double(-7.0)));
    assert_eq!(median.exact_result(&[]), Some(Value::Null));
    let top = AggregateKind::percentile(&SqlType::Double, 1.0).expect("a percentile");
    let doubles = [Value::Double(0.5), Value::Double(-2.0), Value::Double(9.25)];
    assert_eq!(top.exact_result(&doubles), Some(Value::Double(9.25)));
    assert_eq!(
        top.exact_result(&ints(&[1])),
        None,
        "not its argument's type"
    );
    let distinct = kind("APPROX_COUNT_DISTINCT", &SqlType::String);
    let texts = ["a", "b", "a", "1"].map(|s| Value::String(s.into()));
    assert_eq!(distinct.exact_result(&texts), Some(Value::BigInt(3)));
    assert_eq!(distinct.exact_result(&[]), Some(Value::BigInt(0)));
    assert_eq!(
        kind("SUM", &SqlType::BigInt).exact_result(&ints(&[1])),
        None
    );
    assert!(!kind("MAX", &SqlType::BigInt).is_approximate());
    assert!(median.is_approximate() && distinct.is_approximate());
    assert_eq!(median.tolerance(), Some(PERCENTILE_TOLERANCE));
    assert!(PERCENTILE_TOLERANCE.accepts(100.9, 100.0));
    assert!(!PERCENTILE_TOLERANCE.accepts(101.1, 100.0));
    assert!(PERCENTILE_TOLERANCE.accepts(0.0, 0.0));
    assert!(DISTINCT_TOLERANCE.accepts(4.0, 3.0), "one off");
    assert!(DISTINCT_TOLERANCE.accepts(1090.0, 1000.0));
    assert!(!DISTINCT_TOLERANCE.accepts(1110.0, 1000.0));
}
