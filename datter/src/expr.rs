//! Row expressions, as `select` takes them: `reward > 0.5 and step <= 100`,
//! `param.lr == "0.1" or not (loss > 2 * baseline)`.
//!
//! Grammar, loosest first: `or`, `and`, `not`, comparisons (`< <= > >= == !=`), `+ -`,
//! `* /`, unary `-`, then numbers, quoted texts (`'…'` or `"…"`), `true`, `false`, column
//! names (letters, digits, `_`, `.`; any other name in backquotes: `` `reward (mean)` ``) and
//! parentheses. A comparison with a missing value (NaN) is false, as in numpy.

use crate::{Column, DataError, Frame};

/// A parsed expression, ready to evaluate on the rows of a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    text: String,
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Num(f64),
    Text(String),
    Bool(bool),
    Column(String),
    Neg(Box<Node>),
    Not(Box<Node>),
    Binary(Box<Node>, Op, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Or,
    And,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Num(f64),
    Text(String),
    Bool(bool),
}

impl Expr {
    /// Parses `text`; an error says where and what was expected.
    pub fn parse(text: &str) -> Result<Expr, DataError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            text,
            tokens,
            at: 0,
        };
        let root = p.or()?;
        if let Some((pos, t)) = p.tokens.get(p.at) {
            return Err(p.fail(*pos, &format!("{t:?} after a whole expression")));
        }
        Ok(Expr {
            text: text.to_owned(),
            root,
        })
    }

    /// The columns the expression reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        collect_columns(&self.root, &mut out);
        out
    }

    /// Which rows of `frame` the expression holds for. Refuses a column the frame lacks, and
    /// an expression that is not true or false (`reward + 1`).
    pub fn rows(&self, frame: &Frame) -> Result<Vec<bool>, DataError> {
        let cols: Vec<(&str, &Column)> = self
            .columns()
            .into_iter()
            .map(|c| frame.column(c).map(|col| (c, col)))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(frame.rows());
        for r in 0..frame.rows() {
            match eval(&self.root, &cols, r).map_err(|why| self.invalid(&why))? {
                Value::Bool(b) => out.push(b),
                other => {
                    return Err(self.invalid(&format!(
                        "it gives {} where true or false is needed; compare it with something",
                        describe(&other)
                    )));
                }
            }
        }
        Ok(out)
    }

    fn invalid(&self, why: &str) -> DataError {
        DataError::Invalid(format!("in {:?}: {why}", self.text))
    }
}

fn collect_columns<'a>(n: &'a Node, out: &mut Vec<&'a str>) {
    match n {
        Node::Column(c) => {
            if !out.contains(&c.as_str()) {
                out.push(c);
            }
        }
        Node::Neg(a) | Node::Not(a) => collect_columns(a, out),
        Node::Binary(a, _, b) => {
            collect_columns(a, out);
            collect_columns(b, out);
        }
        Node::Num(_) | Node::Text(_) | Node::Bool(_) => {}
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Num(_) => "a number",
        Value::Text(_) => "a text",
        Value::Bool(_) => "true or false",
    }
}

fn cell(col: &Column, r: usize) -> Value {
    match col {
        Column::F64(v) => Value::Num(v[r]),
        #[allow(clippy::cast_precision_loss)] // compared as floats, like numpy does
        Column::I64(v) => Value::Num(v[r] as f64),
        Column::Bool(v) => Value::Bool(v[r]),
        Column::Text(v) => Value::Text(v[r].clone()),
    }
}

fn eval(n: &Node, cols: &[(&str, &Column)], r: usize) -> Result<Value, String> {
    Ok(match n {
        Node::Num(x) => Value::Num(*x),
        Node::Text(t) => Value::Text(t.clone()),
        Node::Bool(b) => Value::Bool(*b),
        Node::Column(c) => {
            let col = cols
                .iter()
                .find(|(name, _)| name == c)
                .map(|(_, col)| *col)
                .ok_or_else(|| format!("no column {c:?}"))?;
            cell(col, r)
        }
        Node::Neg(a) => match eval(a, cols, r)? {
            Value::Num(x) => Value::Num(-x),
            v => return Err(format!("'-' needs a number, not {}", describe(&v))),
        },
        Node::Not(a) => match eval(a, cols, r)? {
            Value::Bool(b) => Value::Bool(!b),
            v => return Err(format!("'not' needs true or false, not {}", describe(&v))),
        },
        Node::Binary(a, op, b) => {
            let (a, b) = (eval(a, cols, r)?, eval(b, cols, r)?);
            binary(*op, a, b)?
        }
    })
}

fn binary(op: Op, a: Value, b: Value) -> Result<Value, String> {
    use std::cmp::Ordering as O;
    let order = |o: Option<O>| -> bool {
        match (op, o) {
            (_, None) => op == Op::Ne,
            (Op::Lt, Some(o)) => o == O::Less,
            (Op::Le, Some(o)) => o != O::Greater,
            (Op::Gt, Some(o)) => o == O::Greater,
            (Op::Ge, Some(o)) => o != O::Less,
            (Op::Eq, Some(o)) => o == O::Equal,
            (Op::Ne, Some(o)) => o != O::Equal,
            _ => false,
        }
    };
    Ok(match (op, a, b) {
        (Op::Or, Value::Bool(x), Value::Bool(y)) => Value::Bool(x || y),
        (Op::And, Value::Bool(x), Value::Bool(y)) => Value::Bool(x && y),
        (Op::Add, Value::Num(x), Value::Num(y)) => Value::Num(x + y),
        (Op::Sub, Value::Num(x), Value::Num(y)) => Value::Num(x - y),
        (Op::Mul, Value::Num(x), Value::Num(y)) => Value::Num(x * y),
        (Op::Div, Value::Num(x), Value::Num(y)) => Value::Num(x / y),
        (Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne, a, b) => {
            let o = match (&a, &b) {
                (Value::Num(x), Value::Num(y)) => x.partial_cmp(y),
                (Value::Text(x), Value::Text(y)) => Some(x.cmp(y)),
                (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
                // A number column against a quoted number, or the other way: the text.
                (Value::Num(x), Value::Text(y)) => {
                    y.parse::<f64>().ok().and_then(|y| x.partial_cmp(&y))
                }
                (Value::Text(x), Value::Num(y)) => {
                    x.parse::<f64>().ok().and_then(|x| x.partial_cmp(y))
                }
                _ => {
                    return Err(format!(
                        "cannot compare {} with {}",
                        describe(&a),
                        describe(&b)
                    ));
                }
            };
            Value::Bool(order(o))
        }
        (op, a, b) => {
            return Err(format!(
                "{op:?} does not take {} and {}",
                describe(&a),
                describe(&b)
            ));
        }
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    Text(String),
    Name(String),
    Sym(&'static str),
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, DataError> {
    let fail = |pos: usize, what: &str| {
        DataError::Invalid(format!(
            "in {text:?}, at character {}: {what}",
            text[..pos].chars().count() + 1
        ))
    };
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(pos, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c.is_ascii_digit()
            || (c == '.' && text[pos + 1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            let mut end = pos;
            while let Some(&(i, d)) = chars.peek() {
                let exp_sign =
                    (d == '-' || d == '+') && matches!(text[..i].chars().last(), Some('e' | 'E'));
                if d.is_ascii_alphanumeric() || d == '.' || exp_sign {
                    end = i + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let n = text[pos..end]
                .parse::<f64>()
                .map_err(|_| fail(pos, &format!("{:?} is not a number", &text[pos..end])))?;
            out.push((pos, Token::Num(n)));
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            chars.next();
            let mut s = String::new();
            let mut closed = false;
            for (_, d) in chars.by_ref() {
                if d == c {
                    closed = true;
                    break;
                }
                s.push(d);
            }
            if !closed {
                return Err(fail(pos, &format!("the {c} opened here is never closed")));
            }
            out.push((
                pos,
                if c == '`' {
                    Token::Name(s)
                } else {
                    Token::Text(s)
                },
            ));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let mut end = pos;
            while let Some(&(i, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' || d == '.' {
                    end = i + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push((pos, Token::Name(text[pos..end].to_owned())));
            continue;
        }
        let two = &text[pos..text.len().min(pos + 2)];
        let sym = ["<=", ">=", "==", "!="]
            .into_iter()
            .find(|s| two == *s)
            .or_else(|| {
                ["<", ">", "+", "-", "*", "/", "(", ")"]
                    .into_iter()
                    .find(|s| s.starts_with(c))
            })
            .ok_or_else(|| {
                if c == '=' {
                    fail(pos, "a single '=': use == to compare")
                } else {
                    fail(pos, &format!("{c:?} is not part of an expression"))
                }
            })?;
        for _ in 0..sym.len() {
            chars.next();
        }
        out.push((pos, Token::Sym(sym)));
    }
    Ok(out)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    at: usize,
}

impl Parser<'_> {
    fn fail(&self, pos: usize, what: &str) -> DataError {
        DataError::Invalid(format!(
            "in {:?}, at character {}: {what}",
            self.text,
            self.text[..pos].chars().count() + 1
        ))
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.tokens.get(self.at), Some((_, Token::Name(n))) if n == w)
    }

    fn peek_sym(&self, syms: &[&'static str]) -> Option<&'static str> {
        match self.tokens.get(self.at) {
            Some((_, Token::Sym(s))) if syms.contains(s) => Some(s),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Node, DataError> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            left = Node::Binary(Box::new(left), Op::Or, Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, DataError> {
        let mut left = self.not()?;
        while self.peek_word("and") {
            self.at += 1;
            left = Node::Binary(Box::new(left), Op::And, Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, DataError> {
        if self.peek_word("not") {
            self.at += 1;
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Node, DataError> {
        let left = self.sum()?;
        let Some(s) = self.peek_sym(&["<", "<=", ">", ">=", "==", "!="]) else {
            return Ok(left);
        };
        self.at += 1;
        let op = match s {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            _ => Op::Ne,
        };
        Ok(Node::Binary(Box::new(left), op, Box::new(self.sum()?)))
    }

    fn sum(&mut self) -> Result<Node, DataError> {
        let mut left = self.term()?;
        while let Some(s) = self.peek_sym(&["+", "-"]) {
            self.at += 1;
            let op = if s == "+" { Op::Add } else { Op::Sub };
            left = Node::Binary(Box::new(left), op, Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Node, DataError> {
        let mut left = self.unary()?;
        while let Some(s) = self.peek_sym(&["*", "/"]) {
            self.at += 1;
            let op = if s == "*" { Op::Mul } else { Op::Div };
            left = Node::Binary(Box::new(left), op, Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, DataError> {
        if self.peek_sym(&["-"]).is_some() {
            self.at += 1;
            return Ok(Node::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Node, DataError> {
        let Some((pos, token)) = self.tokens.get(self.at).cloned() else {
            return Err(self.fail(
                self.text.len(),
                "the expression ends where a value was expected",
            ));
        };
        self.at += 1;
        Ok(match token {
            Token::Num(n) => Node::Num(n),
            Token::Text(t) => Node::Text(t),
            Token::Name(n) if n == "true" => Node::Bool(true),
            Token::Name(n) if n == "false" => Node::Bool(false),
            Token::Name(n) if ["and", "or", "not"].contains(&n.as_str()) => {
                return Err(self.fail(pos, &format!("{n:?} where a value was expected")));
            }
            Token::Name(n) => Node::Column(n),
            Token::Sym("(") => {
                let inner = self.or()?;
                if self.peek_sym(&[")"]).is_none() {
                    return Err(self.fail(pos, "the ( opened here is never closed"));
                }
                self.at += 1;
                inner
            }
            Token::Sym(s) => {
                return Err(self.fail(pos, &format!("{s:?} where a value was expected")));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame::from_columns(vec![
            ("step".into(), Column::I64(vec![1, 2, 3, 4])),
            ("reward".into(), Column::F64(vec![0.1, f64::NAN, 0.7, 0.9])),
            (
                "param.lr".into(),
                Column::Text(["0.1", "0.2", "0.1", "0.2"].map(String::from).to_vec()),
            ),
        ])
        .unwrap()
    }

    fn rows(e: &str) -> Vec<bool> {
        Expr::parse(e).unwrap().rows(&frame()).unwrap()
    }

    #[test]
    fn rows_where_the_expression_holds() {
        assert_eq!(rows("reward > 0.5"), [false, false, true, true]);
        assert_eq!(
            rows("reward > 0.5 and step < 4"),
            [false, false, true, false]
        );
        assert_eq!(
            rows("param.lr == '0.1' or step >= 4"),
            [true, false, true, true]
        );
        assert_eq!(rows("param.lr == 0.2"), [false, true, false, true]);
        assert_eq!(rows("not (step * 2 - 1 > 3)"), [true, true, false, false]);
        assert_eq!(rows("-step < -2.5e0"), [false, false, true, true]);
        // A missing value compares false, except with !=.
        assert_eq!(rows("reward != 0.1"), [false, true, true, true]);
        assert_eq!(
            rows("(`reward` <= 0.7) == true"),
            [true, false, true, false]
        );
    }

    #[test]
    fn bad_expressions_say_where_and_what() {
        let e = |s: &str| Expr::parse(s).unwrap_err().to_string();
        assert_eq!(
            e("reward >> 1"),
            "in \"reward >> 1\", at character 9: \">\" where a value was expected"
        );
        assert_eq!(
            e("(step > 1"),
            "in \"(step > 1\", at character 1: the ( opened here is never closed"
        );
        assert!(e("step > 'x").contains("never closed"));
        assert!(e("step ; 1").contains("is not part of an expression"));
        assert!(e("step = 1").contains("use == to compare"));
        let run = |s: &str| {
            Expr::parse(s)
                .unwrap()
                .rows(&frame())
                .unwrap_err()
                .to_string()
        };
        assert!(run("loss > 1").starts_with("no column \"loss\": the data has \"step\""));
        assert_eq!(
            run("step + 1"),
            "in \"step + 1\": it gives a number where true or false is needed; compare it with something"
        );
    }
}
