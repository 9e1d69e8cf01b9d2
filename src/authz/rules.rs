//! A route's rule (`allow = "..."`): a CEL expression over the request's facts, compiled and
//! checked once when the file loads, evaluated per request. cel-rust has no cost limit (cel-go's
//! runtime cost budget has no counterpart there), so the bound is structural, checked at load:
//! - a rule is at most [`MAX_RULE_BYTES`] long, [`MAX_RULE_DEPTH`] deep and [`MAX_RULE_NODES`]
//!   nodes, so no expression is large;
//! - inside a list macro (`exists`, `all`, `exists_one`, `map`, `filter`) only the macro's own
//!   variables and constants may be used: nothing of the request is read again for every
//!   element, so a rule's work grows with the input's size, never with its square;
//! - `matches()` takes a literal pattern, checked at load (the regex crate's matching is linear
//!   in the input, never backtracking).
//!
//! A rule that fails at run time (an absent claim, a type that does not fit) is false, with
//! CEL's reason, in words that never carry a value of the request.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{Expr, LiteralValue};
use cel::{Context, ExecutionError, IdedExpr, Program, Value};

use super::facts::Facts;

/// The longest rule source, in bytes.
pub const MAX_RULE_BYTES: usize = 4096;
/// The deepest a rule's expression may nest.
pub const MAX_RULE_DEPTH: usize = 32;
/// The most nodes a rule's expression may have.
pub const MAX_RULE_NODES: usize = 512;

/// The variables a rule sees.
const VARIABLES: [&str; 4] = ["claims", "token", "request", "peer"];

/// Identifiers CEL itself defines, which a rule may name (`type(x) == string`).
const TYPE_NAMES: [&str; 10] = [
    "bool",
    "bytes",
    "double",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
];

/// Calls whose result is never a bool: a rule whose root is one cannot allow anything.
const NOT_BOOL: [&str; 14] = [
    "_+_",
    "_-_",
    "_*_",
    "_/_",
    "_%_",
    "-_",
    "size",
    "string",
    "int",
    "uint",
    "double",
    "timestamp",
    "duration",
    "_[_]",
];

/// A compiled, checked rule.
#[derive(Debug)]
pub struct Rule {
    source: String,
    program: Program,
    /// Which of [`VARIABLES`] it reads: only those are bound per request.
    reads: [bool; 4],
}

/// Why a rule did not load, in one sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError(pub String);

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuleError {}

/// Why a rule could not be evaluated on one request: CEL's reason, without values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFailure(pub String);

impl Rule {
    /// Compiles and checks `source`.
    pub fn compile(source: &str) -> Result<Self, RuleError> {
        let fail = |why: String| Err(RuleError(why));
        if source.len() > MAX_RULE_BYTES {
            return fail(format!(
                "the rule is {} bytes; a rule is at most {MAX_RULE_BYTES}",
                source.len()
            ));
        }
        if source.trim().is_empty() {
            return fail("the rule is empty: write a CEL expression, or leave `allow` out".into());
        }
        // The parser recurses on nesting and on chains of ! and -: refused before it runs, so
        // that no rule can exhaust a thread's stack.
        if nesting(source) > MAX_RULE_DEPTH {
            return fail(format!(
                "the rule nests deeper than {MAX_RULE_DEPTH} levels"
            ));
        }
        let program = Program::compile(source).map_err(|errors| {
            let text = errors.to_string();
            let first = text
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("a syntax error");
            RuleError(format!(
                "the rule does not parse: {}",
                first.trim().trim_start_matches("ERROR: ")
            ))
        })?;
        let reads = check(program.expression())?;
        Ok(Self {
            source: source.to_owned(),
            program,
            reads,
        })
    }

    /// The rule as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the rule reads the request's headers (only then are they gathered).
    pub fn reads_headers(&self) -> bool {
        self.reads[2] && self.source.contains("headers")
    }

    /// The rule's value on `facts`: true or false, or why it could not be evaluated.
    pub fn evaluate(&self, facts: &Facts<'_>) -> Result<bool, RuleFailure> {
        let mut context = Context::default();
        if self.reads[0] {
            context.add_variable_from_value("claims", facts.claims());
        }
        if self.reads[1] {
            context.add_variable_from_value("token", facts.token());
        }
        if self.reads[2] {
            context.add_variable_from_value("request", facts.request());
        }
        if self.reads[3] {
            context.add_variable_from_value("peer", facts.peer());
        }
        match self.program.execute(&context) {
            Ok(Value::Bool(value)) => Ok(value),
            Ok(other) => Err(RuleFailure(format!(
                "the rule's value is a {:?}, not a bool",
                other.type_of()
            ))),
            Err(error) => Err(RuleFailure(failure(&error))),
        }
    }
}

/// How deep `source` nests, read as text: brackets open at once, or the longest run of the
/// unary operators `!` and `-`; string literals skipped.
fn nesting(source: &str) -> usize {
    let (mut depth, mut deepest, mut run) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == open {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        match c {
            '!' | '-' => run += 1,
            c if c.is_whitespace() => {}
            _ => run = 0,
        }
        deepest = deepest.max(depth).max(run);
    }
    deepest
}

/// CEL's reason in words that name keys and types, never values.
fn failure(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::NoSuchOverload(overload) => overload.to_string(),
        ExecutionError::UndeclaredReference(name) => format!("undeclared reference to {name}"),
        ExecutionError::UnexpectedType { got, want } => {
            format!("unexpected type: got {got}, want {want}")
        }
        ExecutionError::ValuesNotComparable(..) => "values that cannot be compared".to_owned(),
        ExecutionError::IndexOutOfBounds(_) => "a list index out of bounds".to_owned(),
        ExecutionError::DivisionByZero(_) | ExecutionError::RemainderByZero(_) => {
            "a division by zero".to_owned()
        }
        ExecutionError::Overflow(operator, ..) => format!("an overflow in {operator}"),
        ExecutionError::FunctionError { function, .. } => format!("{function} failed"),
        _ => "an evaluation error".to_owned(),
    }
}

/// Walks the expression without recursion (a hostile one may nest deeply): its depth, its size,
/// its identifiers and what list macros use, and `matches()`' patterns; which variables it reads.
fn check(root: &IdedExpr) -> Result<[bool; 4], RuleError> {
    let fail = |why: String| Err(RuleError(why));
    if let Expr::Literal(literal) = &root.expr {
        if !matches!(literal, LiteralValue::Boolean(_)) {
            return fail("the rule's value can never be a bool: it is a constant".into());
        }
    }
    match &root.expr {
        Expr::List(_) | Expr::Map(_) | Expr::Struct(_) => {
            return fail("the rule's value can never be a bool: it is a list or a map".into())
        }
        Expr::Call(call) if NOT_BOOL.contains(&call.func_name.as_str()) => {
            return fail(format!(
                "the rule's value can never be a bool: {} gives a number, a string or a value",
                call.func_name.trim_matches('_')
            ))
        }
        _ => {}
    }
    let mut reads = [false; 4];
    let mut nodes = 0usize;
    // (node, depth, variables bound here, whether inside a list macro's body)
    let mut stack: Vec<(&IdedExpr, usize, Arc<Vec<String>>, bool)> =
        vec![(root, 1, Arc::new(Vec::new()), false)];
    while let Some((node, depth, bound, in_macro)) = stack.pop() {
        nodes += 1;
        if nodes > MAX_RULE_NODES {
            return fail(format!(
                "the rule has more than {MAX_RULE_NODES} parts; split it across routes"
            ));
        }
        if depth > MAX_RULE_DEPTH {
            return fail(format!(
                "the rule nests deeper than {MAX_RULE_DEPTH} levels"
            ));
        }
        match &node.expr {
            Expr::Ident(name) => {
                if bound.iter().any(|b| b == name) {
                    continue;
                }
                if let Some(at) = VARIABLES.iter().position(|v| v == name) {
                    if in_macro {
                        return fail(format!(
                            "inside a list macro (exists, all, map, filter) a rule uses only the \
                             macro's own variable and constants, not {name}: the macro runs for \
                             every element; compare outside it (x in claims.groups)"
                        ));
                    }
                    reads[at] = true;
                } else if !TYPE_NAMES.contains(&name.as_str()) {
                    return fail(format!(
                        "the rule names {name}, which does not exist: a rule sees claims, \
                         token, request and peer"
                    ));
                }
            }
            Expr::Call(call) => {
                if call.func_name == "matches" {
                    let pattern = match (&call.target, call.args.as_slice()) {
                        (Some(_), [pattern]) | (None, [_, pattern]) => &pattern.expr,
                        _ => &Expr::Unspecified,
                    };
                    let Expr::Literal(LiteralValue::String(pattern)) = pattern else {
                        return fail(
                            "matches() takes a literal pattern ('^/v[0-9]+/'), never one made \
                             from the request"
                                .into(),
                        );
                    };
                    if let Err(e) = regex::Regex::new(pattern) {
                        let why = e.to_string().replace('\n', " ");
                        return fail(format!(
                            "matches(): the pattern is not a regular expression: {}",
                            why.split_whitespace().collect::<Vec<_>>().join(" ")
                        ));
                    }
                }
                if let Some(target) = &call.target {
                    stack.push((target, depth + 1, Arc::clone(&bound), in_macro));
                }
                for arg in &call.args {
                    stack.push((arg, depth + 1, Arc::clone(&bound), in_macro));
                }
            }
            Expr::Comprehension(comprehension) => {
                stack.push((
                    &comprehension.iter_range,
                    depth + 1,
                    Arc::clone(&bound),
                    in_macro,
                ));
                stack.push((
                    &comprehension.accu_init,
                    depth + 1,
                    Arc::clone(&bound),
                    in_macro,
                ));
                let mut inner = (*bound).clone();
                inner.push(comprehension.iter_var.clone());
                if let Some(second) = &comprehension.iter_var2 {
                    inner.push(second.clone());
                }
                inner.push(comprehension.accu_var.clone());
                let inner = Arc::new(inner);
                for body in [
                    &comprehension.loop_cond,
                    &comprehension.loop_step,
                    &comprehension.result,
                ] {
                    stack.push((body, depth + 1, Arc::clone(&inner), true));
                }
            }
            Expr::List(list) => {
                for element in &list.elements {
                    stack.push((element, depth + 1, Arc::clone(&bound), in_macro));
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(entry) = &entry.expr {
                        stack.push((&entry.key, depth + 1, Arc::clone(&bound), in_macro));
                        stack.push((&entry.value, depth + 1, Arc::clone(&bound), in_macro));
                    }
                }
            }
            Expr::Struct(_) => {
                return fail("the rule builds a message; rules see no message types".into())
            }
            Expr::Select(select) => {
                stack.push((&select.operand, depth + 1, Arc::clone(&bound), in_macro));
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    Ok(reads)
}

/// A JSON value as CEL sees it: an integral number in i64's range an int, other numbers
/// doubles, objects maps with string keys.
pub fn json_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_value).collect()))
        }
        serde_json::Value::Object(map) => json_object(map),
    }
}

/// A JSON object as a CEL map.
pub fn json_object(map: &serde_json::Map<String, serde_json::Value>) -> Value {
    let entries: HashMap<cel::objects::Key, Value> = map
        .iter()
        .map(|(key, value)| (cel::objects::Key::from(key.as_str()), json_value(value)))
        .collect();
    Value::Map(cel::objects::Map {
        map: Arc::new(entries),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(source: &str) -> String {
        Rule::compile(source).expect_err(source).0
    }

    #[test]
    fn load_errors_say_what_is_wrong() {
        assert!(problem("claims.x ==").contains("does not parse"));
        assert!(problem("user.admin").contains("names user, which does not exist"));
        assert!(problem("1 + 2").contains("never be a bool"));
        assert!(problem("'x'").contains("never be a bool"));
        assert!(problem("[true]").contains("never be a bool"));
        assert!(problem("size(claims.groups)").contains("never be a bool"));
        assert!(problem("").contains("empty"));
        assert!(problem(&"a".repeat(MAX_RULE_BYTES + 1)).contains("at most 4096"));
        assert!(problem("request.path.matches(claims.pattern)").contains("literal pattern"));
        assert!(problem("request.path.matches('(')").contains("not a regular expression"));
        assert!(
            problem("claims.groups.exists(g, claims.groups.exists(h, g == h))")
                .contains("inside a list macro")
        );
        assert!(problem("claims.groups.exists(g, g == claims.sub)").contains("inside a list"));
    }

    #[test]
    fn hostile_nesting_is_refused_without_recursing() {
        let nots = format!("{}true", "!".repeat(MAX_RULE_BYTES - 4));
        assert!(problem(&nots).contains("nests deeper"));
        let minus = format!("claims.a == {}1", "- ".repeat(1000));
        assert!(problem(&minus).contains("nests deeper"));
        assert!(Rule::compile("'((((((((((((((((((((((((((((((((((((' != request.path").is_ok());
        let selects = format!("claims{} == 1", ".a".repeat(40));
        assert!(problem(&selects).contains("nests deeper"));
        let lists = format!("{}1{} == []", "[".repeat(1000), "]".repeat(1000));
        assert!(problem(&lists).contains("nests deeper"));
        let parens = format!("{}true{}", "(".repeat(2000), ")".repeat(2000));
        assert!(!problem(&parens).is_empty());
        let wide = vec!["claims.a == 1"; 200].join(" || ");
        assert!(problem(&wide).contains("nests deeper") || problem(&wide).contains("parts"));
    }

    #[test]
    fn macros_over_their_own_variables_load() {
        for ok in [
            "claims.groups.exists(g, g.startsWith('team-'))",
            "claims.orgs.exists(o, o.roles.exists(r, r == 'admin'))",
            "'ops' in claims.groups && has(claims.email)",
            "type(claims.level) == int",
            "request.path.matches('^/v[0-9]+/')",
        ] {
            Rule::compile(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn json_integers_are_ints_and_others_doubles() {
        let claims =
            serde_json::json!({"level": 3, "ratio": 0.5, "big": 1e300, "n": {"x": [1, "a"]}});
        let Value::Map(map) = json_value(&claims) else {
            panic!("a map");
        };
        assert!(matches!(
            map.get(&cel::objects::Key::from("level")),
            Some(Value::Int(3))
        ));
        assert!(matches!(
            map.get(&cel::objects::Key::from("ratio")),
            Some(Value::Float(_))
        ));
        assert!(matches!(
            map.get(&cel::objects::Key::from("big")),
            Some(Value::Float(_))
        ));
    }
}
