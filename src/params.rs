//! Request parameters as OAuth reads them: `application/x-www-form-urlencoded` pairs where a
//! repeated parameter is an error (RFC 6749 §3.1, §3.2), not "last one wins".

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, String>,
    repeated: Vec<String>,
}

impl Params {
    pub fn parse(raw: &[u8]) -> Self {
        let mut params = Params::default();
        for (key, value) in form_urlencoded::parse(raw) {
            // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
            if value.is_empty() {
                continue;
            }
            if params.values.contains_key(key.as_ref()) {
                if !params.repeated.contains(&key.to_string()) {
                    params.repeated.push(key.to_string());
                }
            } else {
                params.values.insert(key.into_owned(), value.into_owned());
            }
        }
        params
    }

    /// The value of `name`, or an error naming it when it was sent more than once.
    pub fn get(&self, name: &str) -> Result<Option<&str>, String> {
        if self.repeated.iter().any(|r| r == name) {
            return Err(format!("{name} must not be repeated"));
        }
        Ok(self.values.get(name).map(String::as_str))
    }

    /// The first repeated parameter, if any.
    pub fn first_repeated(&self) -> Option<&str> {
        self.repeated.first().map(String::as_str)
    }

    /// Length of the longest value: a cheap bound against oversized parameters.
    pub fn longest_value(&self) -> usize {
        self.values.values().map(String::len).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_errors_and_empty_ones_are_omitted() {
        let p = Params::parse(b"a=1&b=2&a=3&c=&d=%E9%96%A2");
        assert!(p.get("a").is_err());
        assert_eq!(p.get("b").unwrap(), Some("2"));
        assert_eq!(p.get("c").unwrap(), None);
        assert_eq!(p.get("d").unwrap(), Some("関"));
        assert_eq!(p.first_repeated(), Some("a"));
    }
}
