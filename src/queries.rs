//! The statements of sql/queries.sql, by name, rendered for CHOM's schema.

use crate::target::Target;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
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

thread_local! {
    static RENDERED: RefCell<HashMap<(String, String, &'static str, &'static str), Rc<str>>> = RefCell::new(HashMap::new());
}

/// The statement `name` for `target`, with `{lock}` replaced by `lock`. Rendered once per backend: the
/// triggers call this for every statement on `sites`.
pub fn sql(target: &Target, name: &'static str, lock: &'static str) -> Rc<str> {
    let key = (target.schema.clone(), target.extension_schema.clone(), name, lock);
    if let Some(rendered) = RENDERED.with(|cache| cache.borrow().get(&key).cloned()) {
        return rendered;
    }
    let block = blocks().get(name).unwrap_or_else(|| panic!("no query named {name} in sql/queries.sql"));
    let inlined = block.replace("{live_sites}", &blocks()["live_sites"]).replace("{lock}", lock);
    let rendered: Rc<str> = target.render(&inlined).into();
    RENDERED.with(|cache| cache.borrow_mut().insert(key, rendered.clone()));
    rendered
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
