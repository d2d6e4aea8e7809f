//! Teams markup: recovers the plain text a person typed from the HTML-ish `text` Teams
//! delivers (`<at>` mentions, `<p>`/`<div>` wrappers, `&nbsp;`, emoji as `<img>`).
//! Pure functions, no I/O.

/// Strip Teams markup: returns the plain text a person typed.
///
/// Mentions before any typed text address the bot and are dropped with their
/// content; later mentions are people being talked about, so their names stay.
pub fn plain_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut leading = true;
    let mut closings = Closings::default();
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        if let Some((len, name)) = parse_tag(rest) {
            let is_mention = leading && name == "at";
            let mention_end = is_mention
                .then(|| closings.end_after(html, i + len))
                .flatten();
            i = mention_end.unwrap_or(i + len);
            if matches!(name.as_str(), "br" | "/p" | "/div") {
                out.push('\n');
            }
            continue;
        }
        if leading {
            if let Some(space) = leading_space(rest) {
                i += space;
                continue;
            }
            leading = false;
        }
        let ch = rest.chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8();
    }
    // Decoding only after tags are gone keeps a typed `&lt;p&gt;` as text.
    let decoded = html_escape::decode_html_entities(&out).replace('\u{a0}', " ");
    let unix = decoded.replace("\r\n", "\n").replace('\r', "\n");
    unix.trim().to_string()
}

/// Length and lowercase name (`/p` for a closing tag) of the tag at the start
/// of `s`. A tag is `<` + letter, `</` + letter or `<!`, ending at the first
/// `>` with no `<` before it; anything else (`a < b`, `x <y`) is text.
fn parse_tag(s: &str) -> Option<(usize, String)> {
    let b = s.as_bytes();
    let opens = match (b.first()?, b.get(1)?) {
        (b'<', b'/') => b.get(2).is_some_and(u8::is_ascii_alphabetic),
        (b'<', c) => c.is_ascii_alphabetic() || *c == b'!',
        _ => false,
    };
    if !opens {
        return None;
    }
    let end = 1 + s[1..].find(['<', '>'])?;
    if b[end] != b'>' {
        return None;
    }
    let slash = usize::from(b[1] == b'/');
    let name_len = s[1 + slash..end].find(|c: char| !c.is_ascii_alphanumeric());
    let name = &s[1..1 + slash + name_len.unwrap_or(end - 1 - slash)];
    Some((end + 1, name.to_ascii_lowercase()))
}

/// Where the next `</at>` is. Every search starts past the previous one's result, so over
/// a whole text the searches cover each byte once: many unclosed `<at>` stay linear.
#[derive(Default)]
struct Closings {
    /// The last `</at>` found: (start, end) in the text.
    found: Option<(usize, usize)>,
    /// No `</at>` at or after the last search's start.
    none_after: Option<usize>,
}

impl Closings {
    /// The end of the first `</at>` at or after `from`.
    fn end_after(&mut self, html: &str, from: usize) -> Option<usize> {
        if self.none_after.is_some_and(|p| from >= p) {
            return None;
        }
        if let Some((start, end)) = self.found.filter(|(start, _)| *start >= from) {
            debug_assert!(start < end);
            return Some(end);
        }
        match closing_at(&html[from..]) {
            Some((start, end)) => {
                self.found = Some((from + start, from + end));
                Some(from + end)
            }
            None => {
                self.none_after = Some(from);
                None
            }
        }
    }
}

/// Start and end (byte offsets) of the first `</at>` in `s`.
fn closing_at(s: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(at) = s[from..].find('<').map(|off| from + off) {
        match parse_tag(&s[at..]) {
            Some((len, name)) if name == "/at" => return Some((at, at + len)),
            _ => from = at + 1,
        }
    }
    None
}

/// Length of a whitespace char or whitespace entity (`&nbsp;`) at the start
/// of `s`: such space between mentions must not end the leading region.
fn leading_space(s: &str) -> Option<usize> {
    let first = s.chars().next()?;
    if first.is_whitespace() {
        return Some(first.len_utf8());
    }
    let semi = s.char_indices().take(12).find(|&(_, c)| c == ';');
    let entity = semi.filter(|_| first == '&').map_or("", |(i, _)| &s[..=i]);
    let decoded = html_escape::decode_html_entities(entity);
    let blank = decoded != entity && decoded.chars().all(char::is_whitespace);
    blank.then_some(entity.len())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn stripping_never_panics_and_never_grows_the_text(s in "(<at>|</at>|<p>|&nbsp;|<|>|&|[a-z ]|[^<>&]){0,200}") {
            prop_assert!(plain_text(&s).len() <= s.len());
        }

        #[test]
        fn stripping_arbitrary_text_never_panics(s in any::<String>()) {
            prop_assert!(plain_text(&s).chars().count() <= s.chars().count());
        }
    }

    #[test]
    fn a_mention_after_unclosed_ones_is_still_found_once() {
        assert_eq!(plain_text("<at><at>Bot</at> hi"), "hi");
        assert_eq!(plain_text("<at>x <at>y"), "x y");
        let many = "<at>".repeat(10_000) + "hi";
        assert_eq!(plain_text(&many), "hi");
    }

    #[test]
    fn odd_markup_never_panics_and_unclosed_mentions_lose_only_their_tag() {
        for html in "< <a <at> <at>x & &nbsp é<é> <\u{1F37A}> \" “ \\".split(' ') {
            let _ = plain_text(html);
        }
        let text = plain_text("<at>Bot read employee E-1");
        assert_eq!(text, "Bot read employee E-1");
    }

    #[test]
    fn several_leading_mentions_are_all_removed() {
        let html = "<AT>HR</AT>&nbsp;<at id=\"1\">Bot</at>\n<br>read employee E-1";
        assert_eq!(plain_text(html), "read employee E-1");
    }

    #[test]
    fn a_less_than_sign_that_is_not_a_tag_survives() {
        assert_eq!(plain_text("<p>a < b and c <d</p>"), "a < b and c <d");
        assert_eq!(plain_text("x </ y> <3 >"), "x </ y> <3 >");
    }

    #[test]
    fn line_breaks_and_block_ends_separate_words() {
        let html = "<p>one</p><p>two<br/>three<BR>four</p><div>five</div>";
        assert_eq!(plain_text(html), "one\ntwo\nthree\nfour\nfive");
    }

    #[test]
    fn entities_are_decoded_after_tags_are_removed() {
        let html = "&lt;p&gt; &amp; &#39;x&#39; &quot;y&quot;<span class=\"s\">z</span>";
        assert_eq!(plain_text(html), "<p> & 'x' \"y\"z");
    }
}
