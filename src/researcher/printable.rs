//! What a node chose to say — error messages, log records, dataset names —
//! made safe to print on the researcher's terminal before anything keeps it.

use crate::wire::{ErrorMessage, ListReply, Message, NodeLog, SearchReply};

/// Text a node chose, as it may be printed on a terminal: control
/// characters (terminal escapes, bells, carriage returns) become `�`;
/// newlines and tabs stay.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Every free text of a node's message made [`printable`]: what the
/// researcher's console, CLI and errors print of it.
pub(crate) fn make_printable(message: &mut Message) {
    let clean = |text: &mut String| {
        if text.chars().any(char::is_control) {
            *text = printable(text);
        }
    };
    match message {
        Message::Error(ErrorMessage { message, .. }) | Message::Log(NodeLog { message, .. }) => {
            clean(message)
        }
        Message::SearchReply(SearchReply { datasets, .. })
        | Message::ListReply(ListReply { datasets, .. }) => {
            for d in datasets {
                clean(&mut d.name);
                clean(&mut d.description);
                d.tags.iter_mut().for_each(clean);
                d.columns.iter_mut().for_each(clean);
                d.classes.iter_mut().for_each(clean);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_text_loses_its_terminal_escapes() {
        assert_eq!(
            printable("a\u{1b}[2Jb\u{7}\r\nc\td"),
            "a\u{fffd}[2Jb\u{fffd}\u{fffd}\nc\td"
        );
        let mut error = Message::Error(ErrorMessage {
            researcher_id: None,
            node_id: "n".into(),
            code: crate::wire::ErrorCode::Plan,
            message: "\u{1b}[31mred".into(),
            request: None,
        });
        make_printable(&mut error);
        assert!(
            matches!(error, Message::Error(ErrorMessage { ref message, .. }) if message == "\u{fffd}[31mred")
        );
    }
}
