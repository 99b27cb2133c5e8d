//! A fast classifier of the prompt's task category, for quality priors. Keyword and
//! shape heuristics over the first user/system text only: no model, no allocation
//! beyond a lowercase copy of at most 2 KiB.

use std::fmt;

/// The task categories the catalog has quality priors for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    General,
    Code,
    Math,
    /// A prompt too long for the general prior to mean much; quality follows the general score.
    LongContext,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::General => "general",
            Task::Code => "code",
            Task::Math => "math",
            Task::LongContext => "long-context",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Prompts above this many estimated tokens count as long-context.
pub const LONG_CONTEXT_TOKENS: u64 = 16_000;

const CODE_MARKERS: &[&str] = &[
    "```",
    "def ",
    "fn ",
    "function",
    "class ",
    "import ",
    "#include",
    "public static",
    "const ",
    "let ",
    "=> ",
    "traceback",
    "stack trace",
    "compile",
    "refactor",
    "unit test",
    "regex",
    "sql",
    "python",
    "javascript",
    "typescript",
    "rust",
    "golang",
    "java ",
    "c++",
    "bash",
    "dockerfile",
    "kubernetes",
    "segfault",
    "exception",
];
const MATH_MARKERS: &[&str] = &[
    "solve",
    "integral",
    "derivative",
    "equation",
    "prove",
    "theorem",
    "lemma",
    "probability",
    "matrix",
    "\\frac",
    "\\sum",
    "\\int",
    "sqrt",
    "factorial",
    "polynomial",
    "calculate",
    "how many",
    "arithmetic",
];

/// Classifies a prompt from its head text and estimated size.
pub fn classify(prompt_head: &str, estimated_tokens: u64) -> Task {
    if estimated_tokens > LONG_CONTEXT_TOKENS {
        return Task::LongContext;
    }
    let text = prompt_head.to_lowercase();
    let code = CODE_MARKERS.iter().filter(|m| text.contains(*m)).count()
        + usize::from(text.matches(';').count() >= 3)
        + usize::from(text.matches('{').count() >= 2);
    let symbols = text
        .chars()
        .filter(|c| matches!(c, '+' | '*' | '/' | '=' | '^'))
        .count();
    let digits = text.chars().filter(char::is_ascii_digit).count();
    let math = MATH_MARKERS.iter().filter(|m| text.contains(*m)).count()
        + usize::from(symbols >= 2 && digits >= 2);
    if code >= 2 && code >= math {
        Task::Code
    } else if math >= 1 && math > code {
        Task::Math
    } else if code >= 1 && math == 0 && text.contains("```") {
        Task::Code
    } else {
        Task::General
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_obvious_prompts() {
        assert_eq!(
            classify(
                "Write a Python function that parses a CSV file and refactor it",
                20
            ),
            Task::Code
        );
        assert_eq!(
            classify("```rust\nfn main() { let x = 1; }\n```", 20),
            Task::Code
        );
        assert_eq!(
            classify("Solve the equation 3x + 7 = 22 for x", 20),
            Task::Math
        );
        assert_eq!(
            classify("What is the capital of France?", 20),
            Task::General
        );
        assert_eq!(classify("Summarise this", 50_000), Task::LongContext);
    }
}
