//! The principal of a client certificate, named as Kafka's `ssl.principal.mapping.rules` name
//! it: a comma-separated list of `RULE:pattern/replacement/[L|U]` and `DEFAULT`, tried in
//! order against the certificate's subject (RFC 4514 order, `CN=alice,OU=eng,O=Example`). A
//! rule applies when its pattern matches the whole subject; the subject is then rewritten by
//! the replacement (`$1` is the first group), and lower- or upper-cased with `L` or `U`.
//! `DEFAULT` keeps the subject as it is. When no rule applies, the client is refused, as in
//! Kafka.

use regex::Regex;

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

#[derive(Debug)]
enum Rule {
    Default,
    Rewrite {
        /// The pattern, anchored at both ends.
        whole: Regex,
        /// The pattern as given, for the replacement.
        pattern: Regex,
        /// The replacement in the regex crate's syntax.
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy)]
enum Case {
    Keep,
    Lower,
    Upper,
}

impl PrincipalMapper {
    /// Parses the rules; an empty setting is `DEFAULT`.
    pub fn parse(rules: &str) -> Result<PrincipalMapper, String> {
        let mut parsed = Vec::new();
        let mut rest = rules.trim();
        while !rest.is_empty() {
            let (rule, after) = if let Some(after) = rest.strip_prefix("DEFAULT") {
                (Rule::Default, after)
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after).ok_or_else(|| {
                    format!("invalid rule {rest:?}: expected RULE:pattern/replacement/")
                })?;
                let (replacement, after) = until_slash(after).ok_or_else(|| {
                    format!("invalid rule {rest:?}: expected RULE:pattern/replacement/")
                })?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Case::Lower, &after[1..]),
                    Some('U') => (Case::Upper, &after[1..]),
                    _ => (Case::Keep, after),
                };
                let compile = |text: &str| {
                    Regex::new(text).map_err(|e| format!("rule pattern {pattern:?}: {e}"))
                };
                let pattern_regex = compile(pattern)?;
                let rule = Rule::Rewrite {
                    whole: compile(&format!("^(?:{pattern})$"))?,
                    replacement: replacement_syntax(replacement, pattern_regex.captures_len() - 1),
                    pattern: pattern_regex,
                    case,
                };
                (rule, after)
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                return Err(format!("invalid rule {:?}", &rest[..end]));
            };
            let after = after.trim_start();
            rest = match after.strip_prefix(',') {
                Some(next) => next.trim_start(),
                None if after.is_empty() => after,
                None => return Err(format!("invalid rule: unexpected {after:?} after a rule")),
            };
            parsed.push(rule);
        }
        if parsed.is_empty() {
            parsed.push(Rule::Default);
        }
        Ok(PrincipalMapper { rules: parsed })
    }

    /// The principal's name for a certificate subject, or why none applies.
    pub fn name(&self, subject: &str) -> Result<String, String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(subject.to_string()),
                Rule::Rewrite {
                    whole,
                    pattern,
                    replacement,
                    case,
                } => {
                    if !whole.is_match(subject) {
                        continue;
                    }
                    let name = pattern.replace_all(subject, replacement.as_str());
                    return Ok(match case {
                        Case::Keep => name.into_owned(),
                        Case::Lower => name.to_lowercase(),
                        Case::Upper => name.to_uppercase(),
                    });
                }
            }
        }
        Err(format!(
            "no rule of ssl.principal.mapping.rules applies to {subject:?}"
        ))
    }
}

/// The text up to the first `/` not escaped by a backslash, and what follows that slash.
fn until_slash(text: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '/') => return Some((&text[..at], &text[at + 1..])),
            _ => {}
        }
    }
    None
}

/// A Java replacement string in the regex crate's syntax. `$n` names group n, taking as many
/// digits as name an existing group (`$12` with one group is group 1 then `2`); a `$n` past
/// every group is the text `$n`, as Kafka's mapper treats it; `\x` is `x`.
fn replacement_syntax(java: &str, groups: usize) -> String {
    let mut out = String::new();
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                // The longest prefix of the digits naming a group.
                let used = (1..=digits.len())
                    .rev()
                    .find(|&n| digits[..n].parse::<usize>().is_ok_and(|g| g <= groups));
                match used {
                    Some(n) => {
                        out.push_str(&format!("${{{}}}", &digits[..n]));
                        out.push_str(&digits[n..]);
                    }
                    None => {
                        out.push_str("$$");
                        out.push_str(&digits);
                    }
                }
            }
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(rules: &str, subject: &str) -> Result<String, String> {
        PrincipalMapper::parse(rules)?.name(subject)
    }

    #[test]
    fn kafkas_documented_examples() {
        // The examples of Kafka's security documentation.
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
                     RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
                     RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,\
                     DEFAULT";
        assert_eq!(
            map(
                rules,
                "CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
            )
            .unwrap(),
            "serviceuser"
        );
        assert_eq!(
            map(
                rules,
                "CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
            )
            .unwrap(),
            "adminuser@admin"
        );
        assert_eq!(map(rules, "CN=Alice,O=Example").unwrap(), "alice");
        assert_eq!(map(rules, "O=Example").unwrap(), "O=Example");
    }

    #[test]
    fn upper_case_and_no_matching_rule() {
        assert_eq!(map("RULE:^CN=(.*?),.*$/$1/U", "CN=bob,O=x").unwrap(), "BOB");
        let error = map("RULE:^CN=(.*?),OU=eng$/$1/", "CN=bob,O=x").unwrap_err();
        assert!(error.contains("no rule"), "{error}");
        assert_eq!(map("", "CN=a").unwrap(), "CN=a");
        assert_eq!(map("DEFAULT", "CN=a").unwrap(), "CN=a");
    }

    #[test]
    fn back_references_beyond_the_groups_are_text() {
        assert_eq!(map("RULE:^CN=(.*)$/$1@$4/", "CN=a").unwrap(), "a@$4");
        assert_eq!(map("RULE:^CN=(.*)$/$12/", "CN=a").unwrap(), "a2");
        assert_eq!(map("RULE:^CN=(.*)$/x\\$1/", "CN=a").unwrap(), "x$1");
        assert_eq!(map("RULE:^CN=(.*)$/$0!/", "CN=a").unwrap(), "CN=a!");
    }

    #[test]
    fn escaped_slashes_and_mistakes() {
        assert_eq!(map("RULE:^CN=(.*)\\/x$/$1/", "CN=a/x").unwrap(), "a");
        assert!(PrincipalMapper::parse("RULE:^CN=(.*)$/$1").is_err());
        assert!(PrincipalMapper::parse("RULE:^CN=(.*)$/$1/Q").is_err());
        assert!(PrincipalMapper::parse("NOPE").is_err());
        assert!(PrincipalMapper::parse("RULE:^CN=((.*)$/$1/").is_err());
    }
}
