//! The bits of OData the Graph-compatible API reads: the words of a `$filter` expression
//! (string literals with `''` for a quote) and `@odata.type` annotations in request bodies.

use serde_json::{Map, Value};

use super::ApiError;

/// A word of a `$filter` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A property, operator, function or keyword (`mail`, `eq`, `startswith`, `and`).
    Word(String),
    /// A string literal, unquoted (`'O''Brien'` is `O'Brien`).
    Str(String),
    Open,
    Close,
    Comma,
}

/// Splits a `$filter` expression into words; `Err` says what is wrong.
pub fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => value.push(c),
                        None => return Err("a string is not closed by a quote.".into()),
                    }
                }
                tokens.push(Token::Str(value));
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '.' | '/' | '$' | '@' | '-') => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_alphanumeric() || matches!(c, '_' | '.' | '/' | '$' | '@' | '-')) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(format!("unexpected character '{other}'.")),
        }
        if tokens.len() > 100 {
            return Err("the expression is too long.".into());
        }
    }
    Ok(tokens)
}

/// A client's text, shortened to be quoted in an error message.
pub fn shorten(text: &str) -> String {
    let mut s: String = text.chars().filter(|c| !c.is_control()).take(64).collect();
    if text.chars().count() > 64 {
        s.push('…');
    }
    s
}

/// Takes `@odata.type` out of `obj`: absent is fine; otherwise it must name `expected` (a
/// Graph type such as `microsoft.graph.user`, written with or without the leading `#`, in any
/// case, as Graph reads it). `path` is where the object sits, for the message.
pub fn take_type(obj: &mut Map<String, Value>, expected: &str, path: &str) -> Result<(), ApiError> {
    let Some(given) = obj.remove("@odata.type") else { return Ok(()) };
    let name = if path.is_empty() { "@odata.type".to_owned() } else { format!("{path}.@odata.type") };
    match given.as_str() {
        Some(t) if t.trim_start_matches('#').eq_ignore_ascii_case(expected) => Ok(()),
        Some(t) => Err(ApiError::bad_request(format!(
            "'{name}' is '{}', but only '#{expected}' is accepted here.",
            shorten(t)
        ))),
        None => Err(ApiError::bad_request(format!("'{name}' has the wrong type."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_quotes_and_functions() {
        assert_eq!(
            tokenize("startswith(mail,'o''b') and x eq ''").unwrap(),
            vec![
                Token::Word("startswith".into()),
                Token::Open,
                Token::Word("mail".into()),
                Token::Comma,
                Token::Str("o'b".into()),
                Token::Close,
                Token::Word("and".into()),
                Token::Word("x".into()),
                Token::Word("eq".into()),
                Token::Str(String::new()),
            ]
        );
        assert!(tokenize("mail eq 'open").is_err());
        assert!(tokenize("mail eq \"a\"").is_err());
    }

    #[test]
    fn odata_types_are_checked() {
        let mut obj = serde_json::json!({"@odata.type": "#microsoft.graph.user"}).as_object().unwrap().clone();
        assert!(take_type(&mut obj, "microsoft.graph.user", "invitedUser").is_ok());
        assert!(obj.is_empty());
        let mut obj = serde_json::json!({"@odata.type": "#microsoft.graph.group"}).as_object().unwrap().clone();
        assert!(take_type(&mut obj, "microsoft.graph.user", "invitedUser").is_err());
    }
}
