//! Issue 15, the catalog: the names clients send (dated ids, `-latest`, OpenRouter slugs)
//! reach the model they stand for, and a newer models.dev export imported with
//! `bazaar catalog import` reprices the catalog without a rebuild.

use std::process::Command;

use crate::common::{MockUpstream, TestGateway, KEY};

#[tokio::test]
async fn issue_15_dated_latest_and_openrouter_names_reach_their_model() {
    let mock = MockUpstream::start().await;
    let toml = format!(
        r#"
        [providers.openai]
        base_url = "{}"
        api_key = "env:OPENAI_API_KEY"
        models = ["gpt-4o"]
        [providers.mistral]
        api_key = "env:MISTRAL_API_KEY"
        models = ["mistral-large"]

        [[keys]]
        name = "app"
        key = "{KEY}"
        "#,
        mock.base_url()
    );
    let env = |name: &str| Some(format!("value-of-{name}"));
    let config = bazaar::config::Config::from_toml(&toml, &env).unwrap();
    assert_eq!(config.canonical("gpt-4o-2024-08-06"), "gpt-4o");
    assert_eq!(config.canonical("openai/gpt-4o"), "gpt-4o");
    assert_eq!(config.canonical("mistral-large-latest"), "mistral-large");
    // A dated id priced differently is a model of its own, never an alias.
    assert_eq!(config.canonical("gpt-4o-2024-05-13"), "gpt-4o-2024-05-13");
    let gw = TestGateway::start_config(config).await;
    for name in ["gpt-4o-2024-08-06", "openai/gpt-4o"] {
        let body =
            serde_json::json!({"model": name, "messages": [{"role": "user", "content": "Hi"}]});
        let resp = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}: {}", resp.text().await.unwrap());
        let sent = mock.received().pop().unwrap();
        assert_eq!(sent.body["model"], "gpt-4o", "{name}");
    }
}

/// A models.dev export (its `api.json` shape) with new prices for an OpenAI model and a
/// Together model whose catalog id differs from Together's own id.
const NEWER_MODELS_DEV: &str = r#"{
  "openai": {"id": "openai", "models": {
    "gpt-4o": {"id": "gpt-4o", "tool_call": true, "reasoning": false,
      "modalities": {"input": ["text", "image"], "output": ["text"]},
      "cost": {"input": 2.0, "output": 8.0, "cache_read": 1.0},
      "limit": {"context": 128000, "output": 16384}},
    "gpt-image-9": {"id": "gpt-image-9", "modalities": {"input": ["text"], "output": ["image"]},
      "cost": {"input": 5, "output": 40}, "limit": {"context": 0, "output": 0}}
  }},
  "togetherai": {"id": "togetherai", "models": {
    "meta-llama/Llama-3.3-70B-Instruct-Turbo": {"tool_call": true,
      "modalities": {"input": ["text"], "output": ["text"]},
      "cost": {"input": 0.5, "output": 0.6}, "limit": {"context": 131072, "output": 8192}}
  }},
  "some-other-host": {"id": "some-other-host", "models": {"x": {"cost": {"input": 1, "output": 1}}}}
}"#;

#[test]
fn issue_15_catalog_import_of_a_models_dev_export_reprices_without_a_rebuild() {
    let dir = std::env::temp_dir().join(format!("bazaar-it-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = dir.join("api.json");
    std::fs::write(&export, NEWER_MODELS_DEV).unwrap();
    let imported = dir.join("catalog.json");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args(args)
            .env_clear()
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let said = run(&[
        "catalog".as_ref(),
        "import".as_ref(),
        export.as_os_str(),
        "--out".as_ref(),
        imported.as_os_str(),
    ]);
    // The image model and the unknown host are left out.
    assert!(said.contains("2 models, 2 offers"), "{said}");
    let config = dir.join("bazaar.toml");
    std::fs::write(
        &config,
        format!(
            "[catalog]\nfile = {:?}\n[providers.openai]\napi_key = \"env:OPENAI_API_KEY\"\n[providers.together]\napi_key = \"env:TOGETHER_API_KEY\"\n",
            imported.display().to_string()
        ),
    )
    .unwrap();
    let shown = run(&[
        "catalog".as_ref(),
        "show".as_ref(),
        "gpt-4o".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(shown.contains("\"input\": 2000000"), "{shown}");
    assert!(shown.contains("models.dev import"), "{shown}");

    // The raw export works as `catalog.file` too, and the Together offer is repriced
    // under the catalog's own id instead of becoming a model named after Together's id.
    for file in [&imported, &export] {
        let text = format!(
            "[catalog]\nfile = {:?}\n[providers.openai]\napi_key = \"env:OPENAI_API_KEY\"\n[providers.together]\napi_key = \"env:TOGETHER_API_KEY\"\n",
            file.display().to_string()
        );
        let env = |name: &str| Some(format!("value-of-{name}"));
        let cfg = bazaar::config::Config::from_toml(&text, &env).unwrap();
        let price = |model: &str, provider: &str| {
            cfg.models[model]
                .iter()
                .find(|t| cfg.providers[t.provider].id == provider)
                .unwrap()
                .facts
                .price
        };
        assert_eq!(price("gpt-4o", "openai").input, Some(2_000_000));
        assert_eq!(price("gpt-4o", "openai").output, Some(8_000_000));
        assert_eq!(price("llama-3.3-70b", "together").input, Some(500_000));
        assert!(!cfg
            .catalog
            .models
            .contains_key("meta-llama/Llama-3.3-70B-Instruct-Turbo"));
        // Figures the export does not state keep the built-in value.
        let builtin = bazaar::catalog::builtin::builtin();
        assert_eq!(cfg.catalog.models.len(), builtin.models.len());
    }
    std::fs::remove_dir_all(&dir).ok();
}
