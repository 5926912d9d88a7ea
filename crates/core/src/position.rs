//! Ordering and filtering of providers: pins, includes, excludes and a position list.

use std::collections::{HashMap, HashSet};

/// Dify's builtin position file (`_position.yaml`).
pub const DEFAULT_BUILTIN_POSITIONS: [&str; 4] = ["audio", "code", "time", "webscraper"];

/// One pins/includes/excludes trio (`POSITION_TOOL_*` or `POSITION_PROVIDER_*`) plus a position list.
///
/// Sorting puts pinned names first in pin order, then names in the position list in list order, then every other
/// name in its original order (the sort is stable). Filtering: an excluded name never passes; when the include set
/// is non-empty only its names pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    pins: Vec<String>,
    includes: HashSet<String>,
    excludes: HashSet<String>,
    order: Vec<String>,
}

impl Positions {
    /// Builds from the comma-separated environment values (`""` = unset) and a position list.
    pub fn new(pins: &str, includes: &str, excludes: &str, order: Vec<String>) -> Self {
        Self {
            pins: split_list(pins).collect(),
            includes: split_list(includes).collect(),
            excludes: split_list(excludes).collect(),
            order,
        }
    }

    /// Reads a position file: one name per line, YAML list markers (`- name`) and `#` comments allowed.
    pub fn parse_position_file(text: &str) -> Vec<String> {
        text.lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .map(|line| line.strip_prefix('-').unwrap_or(line).trim())
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether `name` is filtered out.
    pub fn is_filtered(&self, name: &str) -> bool {
        self.excludes.contains(name) || (!self.includes.is_empty() && !self.includes.contains(name))
    }

    /// Stable sort of `items` by the name `key` returns.
    pub fn sort_by_name<T>(&self, items: &mut [T], key: impl Fn(&T) -> &str) {
        let rank = self.rank_map();
        items.sort_by_key(|item| rank.get(key(item)).copied().unwrap_or(usize::MAX));
    }

    fn rank_map(&self) -> HashMap<&str, usize> {
        let mut rank = HashMap::new();
        for name in self.pins.iter().chain(self.order.iter()) {
            let next = rank.len();
            rank.entry(name.as_str()).or_insert(next);
        }
        rank
    }
}

fn split_list(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Vec<String> {
        DEFAULT_BUILTIN_POSITIONS.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pins_then_file_order_then_the_rest_stably() {
        let positions = Positions::new("webscraper, zeta", "", "", order());
        let mut names = vec!["beta", "time", "alpha", "zeta", "code", "webscraper"];
        positions.sort_by_name(&mut names, |s| s);
        assert_eq!(names, vec!["webscraper", "zeta", "code", "time", "beta", "alpha"]);
    }

    #[test]
    fn excludes_win_over_includes() {
        let positions = Positions::new("", "time,code", "code", order());
        assert!(!positions.is_filtered("time"));
        assert!(positions.is_filtered("code"), "exclude wins");
        assert!(positions.is_filtered("webscraper"), "not in the include set");
        let open = Positions::new("", "", "", order());
        assert!(!open.is_filtered("anything"));
    }

    #[test]
    fn position_file_accepts_yaml_lists_and_comments() {
        let names = Positions::parse_position_file("# builtin order\n- time\n-  code # second\n\nwebscraper\n");
        assert_eq!(names, vec!["time", "code", "webscraper"]);
    }
}
