//! The bounded view of a conversation the predictor reads: the head of the system
//! prompt, the head of the first user turn when there are several, and the last user
//! turn (its head, and its tail when it is long). What a call is about is in the last
//! turn and its setting; the size of the view is bounded whatever the request's size, so
//! the predictor's work is too. Training reads the same view of each row's prompt (one
//! user turn), so what is fitted is what is served.

/// Bytes kept from the head of the system prompt, and of the first user turn.
pub const CONTEXT_BYTES: usize = 512;
/// Bytes kept from the head of the last user turn.
pub const HEAD_BYTES: usize = 2048;
/// Bytes kept from the end of a last user turn longer than `HEAD_BYTES + TAIL_BYTES`.
pub const TAIL_BYTES: usize = 1024;
/// The most a view can hold (with its separators).
pub const MAX_VIEW_BYTES: usize = 2 * CONTEXT_BYTES + HEAD_BYTES + 2 * TAIL_BYTES + 4;

/// Collects the view from a conversation's texts as they are parsed, in order.
#[derive(Debug, Clone, Default)]
pub struct ViewBuilder {
    system: String,
    first_user: String,
    users: usize,
    /// The index of the message the current user turn came from.
    turn: Option<usize>,
    head: String,
    /// Text after `head`, bounded: only its last `2 * TAIL_BYTES` are kept.
    tail: String,
    /// Bytes of the turn dropped between `head` and `tail`.
    gap: bool,
}

/// The longest prefix of `text` of at most `n` bytes that ends on a char boundary.
fn prefix(text: &str, n: usize) -> &str {
    let mut i = n.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    &text[..i]
}

/// The longest suffix of `text` of at most `n` bytes that starts on a char boundary.
fn suffix(text: &str, n: usize) -> &str {
    let mut i = text.len().saturating_sub(n);
    while !text.is_char_boundary(i) {
        i += 1;
    }
    &text[i..]
}

impl ViewBuilder {
    /// Text of a system (or developer) message.
    pub fn system(&mut self, text: &str) {
        let room = CONTEXT_BYTES.saturating_sub(self.system.len());
        if room > 0 {
            if !self.system.is_empty() {
                self.system.push('\n');
            }
            self.system.push_str(prefix(text, room.saturating_sub(1)));
        }
    }

    /// Text of user message number `message` (a message's parts arrive with one number).
    pub fn user(&mut self, message: usize, text: &str) {
        if self.turn != Some(message) {
            if self.users == 1 {
                self.first_user = prefix(&self.head, CONTEXT_BYTES).to_string();
            }
            self.users += 1;
            self.turn = Some(message);
            self.head.clear();
            self.tail.clear();
            self.gap = false;
        } else if !self.head.is_empty() || !self.tail.is_empty() {
            self.push("\n");
        }
        self.push(text);
    }

    fn push(&mut self, text: &str) {
        let mut rest = text;
        if self.tail.is_empty() && !self.gap && self.head.len() < HEAD_BYTES {
            let take = prefix(rest, HEAD_BYTES - self.head.len());
            self.head.push_str(take);
            rest = &rest[take.len()..];
            if rest.is_empty() {
                return;
            }
        }
        if rest.len() > 2 * TAIL_BYTES {
            self.gap = true;
            self.tail.clear();
            rest = suffix(rest, TAIL_BYTES);
        }
        self.tail.push_str(rest);
        if self.tail.len() > 2 * TAIL_BYTES {
            self.gap = true;
            self.tail = suffix(&self.tail, TAIL_BYTES).to_string();
        }
    }

    /// The view: system head, first user turn head (when there are several), last turn.
    pub fn view(&self) -> String {
        let mut out = String::with_capacity(MAX_VIEW_BYTES);
        for part in [&self.system, &self.first_user] {
            if !part.is_empty() {
                out.push_str(part);
                out.push('\n');
            }
        }
        out.push_str(&self.head);
        let whole = self.head.len() + self.tail.len() <= HEAD_BYTES + TAIL_BYTES;
        if !self.gap && whole {
            out.push_str(&self.tail);
        } else {
            out.push('\n');
            out.push_str(suffix(&self.tail, TAIL_BYTES));
        }
        out
    }
}

/// The view of a prompt that is one user turn (how training rows are read).
pub fn of_prompt(prompt: &str) -> String {
    let mut b = ViewBuilder::default();
    b.user(0, prompt);
    b.view()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_prompt_is_its_own_view() {
        assert_eq!(of_prompt("What is 2 + 2?"), "What is 2 + 2?");
        let s = "x".repeat(HEAD_BYTES + TAIL_BYTES);
        assert_eq!(of_prompt(&s), s);
    }

    #[test]
    fn a_long_turn_keeps_its_head_and_tail() {
        let long = format!("{}{}{}", "a".repeat(3000), "b".repeat(100_000), "the end");
        let v = of_prompt(&long);
        assert!(v.len() <= MAX_VIEW_BYTES);
        assert!(v.starts_with(&"a".repeat(HEAD_BYTES)));
        assert!(v.ends_with("the end"));
        // The same view whatever the pieces the text arrives in.
        let mut b = ViewBuilder::default();
        for chunk in long.as_bytes().chunks(777) {
            b.user(3, std::str::from_utf8(chunk).unwrap());
        }
        // Chunks are joined by newlines (they are a message's parts), so compare shape.
        let w = b.view();
        assert!(w.len() <= MAX_VIEW_BYTES && w.ends_with("the end"));
    }

    #[test]
    fn the_last_turn_and_the_setting_are_read() {
        let mut b = ViewBuilder::default();
        b.system("You are a careful math tutor.");
        b.user(1, &"Solve for x: 3x + 7 = 22. ".repeat(100));
        b.user(3, "Now explain it to a child.");
        let v = b.view();
        assert!(v.starts_with("You are a careful math tutor.\nSolve for x"));
        assert!(v.ends_with("\nNow explain it to a child."));
        assert!(v.len() <= 2 * CONTEXT_BYTES + 40);
    }

    #[test]
    fn bounded_and_on_char_boundaries() {
        let mut b = ViewBuilder::default();
        let e = "é".repeat(400_000);
        b.system(&e);
        b.user(1, &e);
        b.user(2, &e);
        let v = b.view();
        assert!(v.len() <= MAX_VIEW_BYTES, "{}", v.len());
    }
}
