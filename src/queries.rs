//! The statements of sql/queries.sql, by name, rendered for CHOM's schema.

use crate::target::Target;
use std::collections::HashMap;
use std::sync::OnceLock;

const QUERIES_SQL: &str = include_str!("../sql/queries.sql");

fn blocks() -> &'static HashMap<&'static str, String> {
    static BLOCKS: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    BLOCKS.get_or_init(|| {
        let mut blocks = HashMap::new();
        for block in QUERIES_SQL.split("-- name: ").skip(1) {
            let (name, body) = block.split_once('\n').expect("a query block has a body");
            let statement: Vec<&str> = body.lines().filter(|line| !line.trim_start().starts_with("--")).collect();
            blocks.insert(name.trim(), statement.join("\n").trim().to_string());
        }
        blocks
    })
}

/// The statement `name` for `target`, with `{lock}` replaced by `lock`.
pub fn sql(target: &Target, name: &str, lock: &str) -> String {
    let block = blocks().get(name).unwrap_or_else(|| panic!("no query named {name} in sql/queries.sql"));
    let inlined = block.replace("{live_sites}", &blocks()["live_sites"]).replace("{lock}", lock);
    target.render(&inlined)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_block_has_a_statement() {
        for (name, statement) in super::blocks() {
            assert!(!statement.is_empty(), "query {name} is empty");
            assert!(!statement.contains("-- name"), "query {name} swallowed another block");
        }
        assert!(super::blocks().len() >= 15);
    }
}
