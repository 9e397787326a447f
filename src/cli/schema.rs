//! `writ schema`: the JSON Schema of the config (for yaml-language-server).

pub fn run() -> u8 {
    let schema = writ_engine::config::json_schema();
    match serde_json::to_string_pretty(&schema) {
        Ok(s) => {
            out!("{s}");
            0
        }
        Err(e) => {
            eprintln!("writ: cannot render schema: {e}");
            1
        }
    }
}
