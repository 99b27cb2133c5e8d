//! Every example config in `config/` resolves (with its env vars set) and `bazaar check` agrees.

use std::process::Command;

#[test]
fn example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let env = |name: &str| Some(format!("test-value-for-{name}"));
        bazaar::config::Config::from_toml(&text, &env)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bazaar"));
        cmd.arg("check").arg("--config").arg(&path);
        for var in [
            "OPENAI_API_KEY",
            "TOGETHER_API_KEY",
            "GROQ_API_KEY",
            "BAZAAR_MASTER_KEY",
            "BAZAAR_APP_KEY",
            "BAZAAR_WEB_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
        ] {
            cmd.env(var, format!("value-of-{var}"));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn check_reports_every_problem_with_its_path() {
    let dir = std::env::temp_dir().join(format!("bazaar-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[providers.x]\nbase_url = \"ftp://nowhere\"\ntier = \"cheap\"\n[routes.r]\npolicy = \"random\"\nmodels = [\"ghost\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "providers.x.base_url",
        "providers.x.tier",
        "routes.r.models[0]",
        "routes.r.policy",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
