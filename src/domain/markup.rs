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
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        if let Some((len, name)) = parse_tag(rest) {
            let is_mention = leading && name == "at";
            let mention_end = is_mention.then(|| closing_at_end(&rest[len..])).flatten();
            i += len + mention_end.unwrap_or(0);
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

/// Byte offset just past the first `</at>` in `s`.
fn closing_at_end(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = s[from..].find('<').map(|off| from + off) {
        match parse_tag(&s[at..]) {
            Some((len, name)) if name == "/at" => return Some(at + len),
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
    use super::*;

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
