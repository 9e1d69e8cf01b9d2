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

use std::sync::{Arc, LazyLock};

use cel::common::ast::{Expr, LiteralValue};
use cel::{Context, Env, ExecutionError, IdedExpr, Program, Value};

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

/// CEL's standard functions, built once.
static STDLIB: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A compiled, checked rule.
#[derive(Debug)]
pub struct Rule {
    source: String,
    program: Program,
    /// Which of [`VARIABLES`] it reads: only those are bound per request.
    reads: [bool; 4],
    /// Whether it reads `request.headers` (only then are they gathered).
    reads_headers: bool,
    /// For each of [`VARIABLES`], the only fields it reads (`claims.groups`,
    /// `claims['email']`), or None when it reads the variable whole (`'x' in claims`): only
    /// those are bound per request, so that a rule's cost follows what it reads, not the size
    /// of the token.
    fields: [Option<Vec<String>>; 4],
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

/// A rule taken apart for the explain command: its outermost chain's operator (`&&`, `||`,
/// or empty when it is no chain) and each part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleParts {
    pub joined_by: &'static str,
    pub parts: Vec<RulePart>,
}

/// One part of a rule, as written, and its value shown as CEL writes it, or why it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePart {
    pub text: String,
    pub value: Result<String, RuleFailure>,
}

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
        let Checked {
            reads,
            reads_headers,
        } = check(program.expression())?;
        let fields = VARIABLES.map(|variable| fields_read(program.expression(), variable));
        Ok(Self {
            source: source.to_owned(),
            program,
            reads,
            reads_headers,
            fields,
        })
    }

    /// The rule as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the rule reads the request's headers (only then are they gathered).
    pub fn reads_headers(&self) -> bool {
        self.reads_headers
    }

    /// The rule's value on `facts`: true or false, or why it could not be evaluated.
    pub fn evaluate(&self, facts: &Facts<'_>) -> Result<bool, RuleFailure> {
        match self.program.execute(&self.context(facts)) {
            Ok(Value::Bool(value)) => Ok(value),
            Ok(other) => Err(RuleFailure(format!(
                "the rule's value is a {:?}, not a bool",
                other.type_of()
            ))),
            Err(error) => Err(RuleFailure(failure(&error))),
        }
    }

    /// The rule's parts joined by its outermost `&&` (or `||`), each as written with its
    /// value on `facts` (CEL's reason when it fails), for the explain command: an operator
    /// reads which condition held and which did not. One part when the rule is no such chain.
    pub fn parts(&self, facts: &Facts<'_>) -> RuleParts {
        let context = self.context(facts);
        let root = self.program.expression();
        let (joined_by, parts) = match &root.expr {
            Expr::Call(call) if call.func_name == "_&&_" => ("&&", joined(root, "_&&_")),
            Expr::Call(call) if call.func_name == "_||_" => ("||", joined(root, "_||_")),
            _ => ("", vec![root]),
        };
        let op = match joined_by {
            "&&" => "_&&_",
            "||" => "_||_",
            _ => "",
        };
        let texts = if op.is_empty() {
            None
        } else {
            texts(&self.source, root, op, self.program.source_info())
        }
        .filter(|texts| texts.len() == parts.len())
        .unwrap_or_else(|| vec![self.source.trim().to_owned(); parts.len()]);
        let parts = parts
            .into_iter()
            .zip(texts)
            .map(|(part, text)| {
                let value = Value::resolve(part, &context)
                    .map(|value| shown(&value))
                    .map_err(|error| RuleFailure(failure(&error)));
                RulePart { text, value }
            })
            .collect();
        RuleParts { joined_by, parts }
    }

    /// A context with the variables the rule reads bound to `facts`.
    fn context<'v>(&self, facts: &Facts<'v>) -> Context<'v, 'v> {
        // Over the one standard library: building it per request (Context::default) cost
        // 95% of a routed decision, measured.
        let mut context = Context::with_env(Arc::clone(&STDLIB));
        let only = |at: usize| self.fields[at].as_deref();
        if self.reads[0] {
            context.add_variable_as_val("claims", facts.claims(only(0)));
        }
        if self.reads[1] {
            context.add_variable_as_val("token", facts.token(only(1)));
        }
        if self.reads[2] {
            context.add_variable_as_val("request", facts.request(only(2)));
        }
        if self.reads[3] {
            context.add_variable_as_val("peer", facts.peer());
        }
        context
    }
}

/// The fields of `variable` that `root` reads, each once: every use of it a field selection
/// (`claims.groups`, `has(claims.groups)`) or an index by a literal string
/// (`claims['https://example.com/roles']`); None when it is used otherwise (whole). Walked
/// without recursion.
fn fields_read(root: &IdedExpr, variable: &str) -> Option<Vec<String>> {
    let is_variable = |expr: &IdedExpr| matches!(&expr.expr, Expr::Ident(name) if name == variable);
    let mut fields: Vec<String> = Vec::new();
    let mut add = |field: &str| {
        if !fields.iter().any(|known| known == field) {
            fields.push(field.to_owned());
        }
    };
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        match &node.expr {
            Expr::Ident(name) if name == variable => return None,
            Expr::Select(select) if is_variable(&select.operand) => add(&select.field),
            Expr::Select(select) => stack.push(&select.operand),
            Expr::Call(call) => {
                if let (true, [on, index]) = (call.func_name == "_[_]", call.args.as_slice()) {
                    if let (true, Expr::Literal(LiteralValue::String(field))) =
                        (is_variable(on), &index.expr)
                    {
                        add(field);
                        continue;
                    }
                }
                stack.extend(call.target.as_deref());
                stack.extend(&call.args);
            }
            Expr::Comprehension(comprehension) => {
                stack.extend([
                    &comprehension.iter_range,
                    &comprehension.accu_init,
                    &comprehension.loop_cond,
                    &comprehension.loop_step,
                    &comprehension.result,
                ]);
            }
            Expr::List(list) => stack.extend(&list.elements),
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(entry) = &entry.expr {
                        stack.push(&entry.key);
                        stack.push(&entry.value);
                    }
                }
            }
            _ => {}
        }
    }
    Some(fields)
}

/// The operands of a chain of `op` (`a && b && c`), left to right, without recursion.
fn joined<'a>(root: &'a IdedExpr, op: &str) -> Vec<&'a IdedExpr> {
    let mut parts = Vec::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        match &node.expr {
            Expr::Call(call) if call.func_name == op && call.target.is_none() => {
                stack.extend(call.args.iter().rev());
            }
            _ => parts.push(node),
        }
    }
    parts
}

/// Each part's text in `source`: what lies between the chain's operators (the parser records
/// an operator's node at the operator), trimmed of the brackets that group parts.
fn texts(
    source: &str,
    chain: &IdedExpr,
    op: &str,
    info: &cel::common::ast::SourceInfo,
) -> Option<Vec<String>> {
    let mut at: Vec<usize> = Vec::new();
    let mut stack = vec![chain];
    while let Some(node) = stack.pop() {
        if let Expr::Call(call) = &node.expr {
            if call.func_name == op && call.target.is_none() {
                at.push(info.offset_for(node.id)?.0 as usize);
                stack.extend(&call.args);
            }
        }
    }
    at.sort_unstable();
    let mut texts = Vec::with_capacity(at.len() + 1);
    let mut from = 0;
    for start in at.into_iter().chain(std::iter::once(source.len())) {
        texts.push(ungrouped(source.get(from..start)?));
        from = start.checked_add(2)?;
    }
    Some(texts)
}

/// `text` trimmed, without the opening or closing brackets it does not close or open.
fn ungrouped(text: &str) -> String {
    let mut text = text.trim();
    let count = |t: &str, c: char| t.chars().filter(|&x| x == c).count();
    while text.starts_with('(') && count(text, '(') > count(text, ')') {
        text = text[1..].trim_start();
    }
    while text.ends_with(')') && count(text, ')') > count(text, '(') {
        text = text[..text.len() - 1].trim_end();
    }
    text.to_owned()
}

/// A value as the explain command shows it: CEL's literal for scalars, else its debug form.
fn shown(value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => format!("{u}u"),
        Value::Float(f) => f.to_string(),
        Value::String(s) => format!("{:?}", s.as_str()),
        other => format!("{other:?}"),
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
/// What [`check`] learns of a rule that passes.
struct Checked {
    reads: [bool; 4],
    reads_headers: bool,
}

fn check(root: &IdedExpr) -> Result<Checked, RuleError> {
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
    let mut reads_headers = false;
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
                if select.field == "headers"
                    && matches!(&select.operand.expr, Expr::Ident(name) if name == "request")
                {
                    reads_headers = true;
                }
                stack.push((&select.operand, depth + 1, Arc::clone(&bound), in_macro));
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    Ok(Checked {
        reads,
        reads_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid token of alice with `claims`, its audience api, its scope read.
    fn token_with(claims: serde_json::Map<String, serde_json::Value>) -> crate::tokens::ValidToken {
        crate::tokens::ValidToken {
            subject: "alice".into(),
            issuer: "https://id".into(),
            audience: vec!["api".into()],
            expires_at: 4_000_000_000,
            scopes: vec!["read".into()],
            token_id: String::new(),
            claims,
            encoded_claims: std::sync::OnceLock::new(),
        }
    }

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
        let mut claims = serde_json::Map::new();
        for (name, value) in
            serde_json::json!({"level": 3, "ratio": 0.5, "big": 1e300, "n": {"x": [1, "a"]}})
                .as_object()
                .expect("an object")
        {
            claims.insert(name.clone(), value.clone());
        }
        let token = token_with(claims);
        let request = crate::authz::RequestFacts::new("GET", "h", "/");
        let facts = Facts {
            token: Some(&token),
            request: &request,
        };
        for holds in [
            "claims.level == 3 && type(claims.level) == int",
            "type(claims.ratio) == double && type(claims.big) == double",
            "claims.n.x[0] == 1 && claims.n.x[1] == 'a'",
            "claims.level > 2.5 && claims.level < 4u",
        ] {
            let rule = Rule::compile(holds).expect(holds);
            assert_eq!(rule.evaluate(&facts), Ok(true), "{holds}");
        }
    }

    #[test]
    fn parts_are_the_outermost_chain_each_as_written_with_its_value() {
        let rule = Rule::compile(
            "request.headers['x-groups'].contains('ops') && (request.path.startsWith('/a')) \
             && request.method == 'GET'",
        )
        .expect("a rule");
        assert!(rule.reads_headers());
        let mut request = crate::authz::RequestFacts::new("POST", "h", "/a/b");
        request.add_header(b"x-groups", b"dev,ops");
        let facts = Facts {
            token: None,
            request: &request,
        };
        let RuleParts { joined_by, parts } = rule.parts(&facts);
        assert_eq!(joined_by, "&&");
        let shown: Vec<(&str, String)> = parts
            .iter()
            .map(|part| {
                (
                    part.text.as_str(),
                    part.value.clone().unwrap_or_else(|e| e.0),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "request.headers['x-groups'].contains('ops')",
                    "true".to_owned()
                ),
                ("(request.path.startsWith('/a'))", "true".to_owned()),
                ("request.method == 'GET'", "false".to_owned()),
            ]
        );
        let single = Rule::compile("request.method == 'POST'").expect("a rule");
        assert!(!single.reads_headers());
        let RuleParts { joined_by, parts } = single.parts(&facts);
        assert_eq!((joined_by, parts.len()), ("", 1));
        assert_eq!(parts[0].text, "request.method == 'POST'");
        let failing =
            Rule::compile("claims.level > 2 || request.method == 'POST'").expect("a rule");
        let parts = failing.parts(&facts).parts;
        assert!(parts[0].value.is_err(), "no claims: {:?}", parts[0].value);
        assert_eq!(parts[1].value, Ok("true".to_owned()));
    }

    #[test]
    fn only_the_fields_a_rule_reads_are_bound_and_a_whole_use_binds_all() {
        let fields = |source: &str| Rule::compile(source).expect(source).fields;
        let read = fields(
            "'ops' in claims.groups && has(claims.email) && claims['https://x/roles'] == 1 \
             && 'read' in token.scopes && request.path.startsWith('/a')",
        );
        let mut claims = read[0].clone().unwrap_or_default();
        claims.sort();
        assert_eq!(claims, ["email", "groups", "https://x/roles"]);
        assert_eq!(read[1].as_deref(), Some(&["scopes".to_owned()][..]));
        assert_eq!(read[2].as_deref(), Some(&["path".to_owned()][..]));
        assert_eq!(fields("'sub' in claims")[0], None, "used whole");
        assert_eq!(
            fields("claims[request.query] == 1")[0],
            None,
            "a computed index"
        );
        assert_eq!(fields("size(claims) > 2")[0], None);
    }

    #[test]
    fn a_rule_bound_to_the_fields_it_reads_answers_as_bound_to_all() {
        let mut claims = serde_json::Map::new();
        claims.insert("groups".into(), serde_json::json!(["ops"]));
        claims.insert("level".into(), serde_json::json!(3));
        let token = token_with(claims);
        let request = crate::authz::RequestFacts::new("GET", "h", "/a");
        let facts = Facts {
            token: Some(&token),
            request: &request,
        };
        for (source, expected) in [
            ("'ops' in claims.groups && claims.level == 3", Ok(true)),
            ("has(claims.email)", Ok(false)),
            ("!has(claims.email) && 'read' in token.scopes", Ok(true)),
            ("'groups' in claims && size(claims) == 2", Ok(true)),
            ("claims.email == 'x'", Err(())),
            (
                "token.expires_at > timestamp('2020-01-01T00:00:00Z')",
                Ok(true),
            ),
        ] {
            let rule = Rule::compile(source).expect(source);
            assert_eq!(rule.evaluate(&facts).map_err(|_| ()), expected, "{source}");
        }
    }
}
