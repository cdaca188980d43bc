use super::*;

fn glob(pattern: &str) -> Glob {
    match Glob::parse(pattern) {
        Ok(g) => g,
        Err(e) => panic!("{pattern:?} should parse: {e}"),
    }
}

fn check(table: &[(&str, &str, bool)]) {
    let failures: Vec<String> = table
        .iter()
        .filter(|(p, v, want)| glob(p).matches(v) != *want)
        .map(|(p, v, want)| format!("{p:?} vs {v:?}: expected {want}"))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn literals_and_separators() {
    check(&[
        ("prod", "prod", true),
        ("prod", "production", false),
        ("prod", "pro", false),
        ("", "", true),
        ("", "a", false),
        ("a.b_c-d", "a.b_c-d", true),
        ("a}b]c,", "a}b]c,", true),
    ]);
}

#[test]
fn star_stays_within_a_segment() {
    check(&[
        ("prod*", "production", true),
        ("prod*", "prod", true),
        ("prod*", "prod-eu", false),
        ("prod*", "prod.eu", false),
        ("prod*", "prod_eu", false),
        ("prod-*", "prod-eu", true),
        ("prod-*", "prod-eu-west", false),
        ("*", "", true),
        ("*", "-", false),
        ("*-*", "-", true),
        ("*-*", "eu-west", true),
        ("*-*", "eu-west-1", false),
        ("a*b", "a-b", false),
        ("a*b", "axxb", true),
        ("*.*", "a.b", true),
        ("*.*", "a.b.c", false),
    ]);
}

#[test]
fn super_crosses_separators() {
    check(&[
        ("prod**", "prod-eu", true),
        ("**", "", true),
        ("**", "a.b-c_d", true),
        ("eu-**", "eu-west-1", true),
        ("eu-**", "us-east-1", false),
        ("a**b", "a.x.b", true),
        ("**-1", "eu-west-1", true),
        ("***", "", true),
        ("***", "a.b", true),
        ("**.*", "a.b.c", true),
        ("**.*", "a.b.c-d", false),
    ]);
}

#[test]
fn single_character() {
    check(&[
        ("?", "a", true),
        ("?", "-", false),
        ("?", "", false),
        ("?", "ab", false),
        ("team-?", "team-7", true),
        ("team-?", "team-77", false),
        ("a?c", "a.c", false),
        ("*?", "a", true),
        ("*?", "", false),
        ("**?**", "-", false),
        ("**?**", "-a-", true),
        ("*?*", "a-b", false),
    ]);
}

#[test]
fn classes() {
    check(&[
        ("[abc]", "b", true),
        ("[abc]", "d", false),
        ("[a-z]", "q", true),
        ("[a-z]", "Q", false),
        ("[a-z]", "-", false),
        ("[a-a]", "a", true),
        ("[!a]", "b", true),
        ("[!a]", "a", false),
        ("[!a]", "-", true),
        ("[!a]", "", false),
        ("[!a-c]", "b", false),
        ("[!a-c]", "-", true),
        ("[^a]", "^", true),
        ("[^a]", "b", false),
        ("[-a]", "-", true),
        ("[ab-c]", "-", true),
        ("[ab-c]", "b", true),
        ("[--a]", ".", true),
        ("[]-a]", "^", true),
        ("[!!]", "!", false),
        ("[!!]", "a", true),
        ("[.]", ".", true),
        ("[\\]]", "]", true),
        ("[a\\]b]", "\\", false),
        ("[\\-a]", "]", true),
        ("env-[0-9]", "env-5", true),
    ]);
}

#[test]
fn alternation() {
    check(&[
        ("{a,b}", "a", true),
        ("{a,b}", "c", false),
        ("{a,b}c", "bc", true),
        ("{a,{b,c}}", "c", true),
        ("{a*,b}", "axy", true),
        ("{a*,b}", "a-x", false),
        ("{a**,b}", "a-x", true),
        ("{}", "", true),
        ("{,a}", "", true),
        ("{,a}", "a", true),
        ("{a,b", "b", true),
        ("{a", "a", true),
        ("a{b", "ab", true),
        ("{", "", true),
        ("{", "{", false),
        ("{a,b}}", "a}", true),
        ("{prod,staging}-{eu,us}-*", "staging-us-x", true),
        ("{prod,staging}-{eu,us}-*", "dev-us-x", false),
        ("app-{1??,2[0-4]?}", "app-245", true),
        ("app-{1??,2[0-4]?}", "app-255", false),
        ("{a\\,b}", "a,b", true),
        ("{a[,]b}", "a,b", true),
        ("a,b", "a,b", true),
    ]);
}

#[test]
fn escapes() {
    check(&[
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("\\?", "?", true),
        ("\\[", "[", true),
        ("\\\\", "\\", true),
        ("a\\b", "ab", true),
        ("a\\", "a", true),
        ("a\\", "a\\", false),
        ("\\", "", true),
        ("{a\\}b}", "a}b", true),
    ]);
}

#[test]
fn unicode_is_matched_by_character() {
    check(&[
        ("é", "é", true),
        ("?", "é", true),
        ("é?", "éü", true),
        ("?é", "aé", true),
        ("é*", "éé", true),
        ("[é-ü]", "ö", true),
        ("[!é]", "é", false),
        ("{é,ü}", "ü", true),
        ("日本*", "日本語", true),
        ("???", "日本語", true),
        ("??", "日本語", false),
    ]);
}

#[test]
fn long_patterns_use_wide_state_sets() {
    let seventy = "a?".repeat(35);
    let value = "ab".repeat(35);
    assert!(glob(&seventy).matches(&value));
    assert!(!glob(&seventy).matches(&value[1..]));
    let wide = format!("{}{{x,y}}", "*-".repeat(200));
    assert!(glob(&wide).matches(&format!("{}y", "a-".repeat(200))));
    assert!(!glob(&wide).matches(&format!("{}y", "a-".repeat(199))));
}

#[test]
fn pathological_patterns_stay_linear() {
    let pattern = "*a".repeat(30) + "**" + &"?".repeat(30);
    let value = "a".repeat(5000);
    let started = std::time::Instant::now();
    assert!(glob(&pattern).matches(&value));
    assert!(!glob(&pattern).matches(&format!("{value}-")));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn literal_prefix_and_literal() {
    assert_eq!(glob("prod-*").literal_prefix(), "prod-");
    assert_eq!(glob("\\*x*").literal_prefix(), "*x");
    assert_eq!(glob("{a,b}").literal_prefix(), "");
    assert_eq!(glob("app-1{2,3}").literal_prefix(), "app-1");
    assert_eq!(glob("prod").as_literal(), Some("prod"));
    assert_eq!(glob("a\\?").as_literal(), Some("a?"));
    assert_eq!(glob("a\\").as_literal(), Some("a"));
    assert_eq!(glob("prod*").as_literal(), None);
    assert_eq!(glob("").as_literal(), Some(""));
}

#[test]
fn equality_is_by_pattern_text() {
    assert_eq!(glob("a*"), glob("a*"));
    assert_ne!(glob("a"), glob("a\\"));
    assert_eq!(glob("x-*").as_str(), "x-*");
    assert_eq!(glob("x-*").to_string(), "x-*");
    assert_eq!(format!("{:?}", glob("x")), "Glob(\"x\")");
}

fn error(pattern: &str) -> GlobError {
    match Glob::parse(pattern) {
        Ok(_) => panic!("{pattern:?} should not parse"),
        Err(e) => e,
    }
}

#[test]
fn errors_name_pattern_and_position() {
    let table: &[(&str, usize, &str)] = &[
        ("prod-[a", 5, "unclosed character class"),
        ("[", 0, "unclosed character class"),
        ("a[!", 1, "unclosed character class"),
        ("x[a-", 1, "unclosed character class"),
        ("[a-]", 0, "unclosed character class"),
        ("[a\\]", 0, "unclosed character class"),
        ("{a,[b}", 3, "unclosed character class"),
        ("[]", 0, "empty character class"),
        ("[!]", 0, "empty character class"),
        ("[]]", 0, "empty character class"),
        ("ab[z-a]", 3, "invalid range z-a"),
        ("[a-]]", 1, "invalid range a-]"),
        ("[a-z0-9]", 4, "expected ']' but found '0'"),
        ("[a-c-e]", 4, "expected ']' but found '-'"),
        ("é[b", 1, "unclosed character class"),
        ("a\0b", 1, "NUL characters are not allowed"),
    ];
    for (pattern, position, reason) in table {
        let e = error(pattern);
        assert_eq!(e.pattern, *pattern);
        assert_eq!(e.position, *position, "{pattern:?}: {e}");
        assert!(e.reason.starts_with(reason), "{pattern:?}: {e}");
    }
}

#[test]
fn error_display() {
    assert_eq!(
        error("prod-[a").to_string(),
        "invalid glob \"prod-[a\" at column 6: unclosed character class"
    );
    assert_eq!(
        "[z-a]".parse::<Glob>().map_err(|e| e.to_string()),
        Err("invalid glob \"[z-a]\" at column 2: invalid range z-a: 'a' comes before 'z'".into())
    );
}
