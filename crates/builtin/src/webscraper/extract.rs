//! Main-content extraction from HTML: a small readability-style heuristic.
//!
//! Dify runs Mozilla's Readability.js under Node for this. toolplane does it in-process:
//! 1. the title is the `<title>` (else `og:title`, else the first `<h1>`), the byline the `author` meta tag or an
//!    element marked as the author, the publish date the `article:published_time` meta tag or a `<time>`;
//! 2. the content root is the largest `<article>` with real text, else `<main>` (or `role="main"`), else the
//!    densest block: every paragraph adds a score (one point, one per comma, one per 100 characters up to three) to
//!    its parent and half of it to its grandparent, and a block's score shrinks with its share of link text;
//! 3. the text of that root is collected block by block, one line per paragraph, heading, list item or table row,
//!    leaving out scripts, styles, forms, navigation, footers, asides, hidden elements and blocks whose class or id
//!    says they are sidebars, menus, comments, share bars, cookie banners and the like.
//!
//! Every walk over the tree is iterative, so deeply nested documents cannot overflow the stack.

use std::collections::{HashMap, HashSet};

use ego_tree::NodeId;
use ego_tree::iter::Edge;
use scraper::{ElementRef, Html, Node};

/// What [`extract_article`] found in a page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Article {
    /// The page title.
    pub title: Option<String>,
    /// The author line.
    pub byline: Option<String>,
    /// The publish date as the page states it.
    pub published: Option<String>,
    /// The readable text of the main content, one block per line, without blank lines.
    pub text: String,
}

/// Extracts the title, byline, publish date and main readable text of an HTML document.
pub fn extract_article(html: &str) -> Article {
    let document = Html::parse_document(&limit_nesting(html, MAX_NESTING));
    let root = document.root_element();
    let content = content_root(root);
    Article {
        title: title(root),
        byline: byline(root),
        published: published(root),
        text: visible_text(content).join("\n"),
    }
}

/// The deepest element nesting handed to the HTML parser.
///
/// html5ever's tree builder takes time quadratic in the nesting depth (a 10 000-deep page takes seconds), so a
/// hostile page of nothing but `<div>`s could pin a CPU. Real pages stay far below this depth.
const MAX_NESTING: usize = 512;

/// Elements whose content is raw text: tags inside them are not tags.
const RAW_TEXT: &[&str] = &[
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript",
];

/// Elements that never have content, or whose end tag is optional and which close each other implicitly, so
/// their start tags do not nest.
const NON_NESTING: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr", "p",
    "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot", "colgroup", "rb", "rt", "rp",
    "html", "head", "body",
];

/// Drops the start tags that would nest elements deeper than `max_depth`, keeping all text.
///
/// This is a rough tokenizer, not a parser: it counts start and end tags, skips raw-text elements, comments and
/// declarations, and ignores implicit closes (so it over-counts, which only drops structure, never text). Pages
/// that stay below the limit are returned unchanged without copying.
fn limit_nesting(html: &str, max_depth: usize) -> std::borrow::Cow<'_, str> {
    let bytes = html.as_bytes();
    let mut depth = 0usize;
    let mut kept = String::new();
    let mut copied_to = 0usize;
    let mut at = 0usize;
    while let Some(offset) = bytes[at..].iter().position(|&b| b == b'<') {
        let start = at + offset;
        at = start + 1;
        match bytes.get(start + 1) {
            Some(b'/') => depth = depth.saturating_sub(1),
            Some(b) if b.is_ascii_alphabetic() => {
                let Some(close) = bytes[start..].iter().position(|&b| b == b'>') else {
                    break;
                };
                let end = start + close; // index of '>'
                let name: String = html[start + 1..end]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect::<String>()
                    .to_ascii_lowercase();
                at = end + 1;
                if RAW_TEXT.contains(&name.as_str()) {
                    // Skip to the matching end tag; an unterminated raw-text element runs to the end.
                    let needle = format!("</{name}");
                    let rest = html[at..].to_ascii_lowercase();
                    at = rest.find(&needle).map_or(bytes.len(), |i| at + i);
                } else if !(NON_NESTING.contains(&name.as_str()) || bytes[end - 1] == b'/') {
                    if depth >= max_depth {
                        kept.push_str(&html[copied_to..start]);
                        copied_to = end + 1;
                    } else {
                        depth += 1;
                    }
                }
            }
            _ => {}
        }
    }
    if copied_to == 0 {
        return std::borrow::Cow::Borrowed(html);
    }
    kept.push_str(&html[copied_to..]);
    std::borrow::Cow::Owned(kept)
}

/// Elements that never hold readable content.
const NEVER_CONTENT: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "footer", "aside", "form", "button", "iframe", "svg", "canvas",
    "select", "textarea", "input", "object", "embed", "dialog", "head", "menu",
];

/// Class or id fragments of page furniture (Readability calls these "unlikely candidates").
const UNLIKELY: &[&str] = &[
    "sidebar",
    "comment",
    "footer",
    "menu",
    "navbar",
    "breadcrumb",
    "share",
    "social",
    "advert",
    "sponsor",
    "promo",
    "related",
    "cookie",
    "popup",
    "modal",
    "subscribe",
    "newsletter",
    "banner",
    "masthead",
    "skip-link",
];

/// Class or id fragments that rescue an element from [`UNLIKELY`].
const LIKELY: &[&str] = &["article", "content", "main", "body", "story", "post", "entry", "text"];

/// Elements that end a line of text.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "blockquote",
    "br",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "thead",
    "tfoot",
    "tr",
    "ul",
    "caption",
];

/// Elements whose text counts as a paragraph when scoring blocks.
const PARAGRAPHS: &[&str] = &["p", "pre", "td", "blockquote"];

/// Paragraphs shorter than this (in characters) do not count.
const MIN_PARAGRAPH_CHARS: usize = 25;

/// An `<article>` with less text than this is a teaser, not the page's content.
const MIN_ARTICLE_CHARS: usize = 200;

/// Whether `element` and its subtree are left out of the text. `inside_article` keeps an article's own header.
fn is_excluded(element: ElementRef<'_>, inside_article: bool) -> bool {
    let value = element.value();
    let name = value.name();
    if NEVER_CONTENT.contains(&name) || (name == "header" && !inside_article) {
        return true;
    }
    if matches!(name, "html" | "body" | "article" | "main") {
        return false;
    }
    if value.attr("hidden").is_some()
        || value.attr("aria-hidden") == Some("true")
        || value.attr("style").is_some_and(|style| {
            let style: String = style.chars().filter(|c| !c.is_whitespace()).collect();
            let style = style.to_ascii_lowercase();
            style.contains("display:none") || style.contains("visibility:hidden")
        })
        || value.attr("role").is_some_and(|role| {
            matches!(
                role,
                "navigation" | "banner" | "contentinfo" | "complementary" | "dialog" | "menu"
            )
        })
    {
        return true;
    }
    let marker = format!("{} {}", value.attr("class").unwrap_or(""), value.id().unwrap_or("")).to_ascii_lowercase();
    UNLIKELY.iter().any(|u| marker.contains(u)) && !LIKELY.iter().any(|l| marker.contains(l))
}

/// Every element that is excluded from the text or lies inside an excluded element, found in one walk.
fn excluded_elements(root: ElementRef<'_>) -> HashSet<NodeId> {
    let mut excluded = HashSet::new();
    let mut skipped: Option<NodeId> = None;
    let mut article_depth = 0usize;
    for edge in root.traverse() {
        match edge {
            Edge::Open(node) => {
                let Some(element) = ElementRef::wrap(node) else {
                    continue;
                };
                if skipped.is_some() || is_excluded(element, article_depth > 0) {
                    skipped.get_or_insert(node.id());
                    excluded.insert(node.id());
                } else if element.value().name() == "article" {
                    article_depth += 1;
                }
            }
            Edge::Close(node) => {
                if skipped == Some(node.id()) {
                    skipped = None;
                } else if skipped.is_none() && ElementRef::wrap(node).is_some_and(|e| e.value().name() == "article") {
                    article_depth = article_depth.saturating_sub(1);
                }
            }
        }
    }
    excluded
}

fn elements_named<'a>(root: ElementRef<'a>, name: &'a str) -> impl Iterator<Item = ElementRef<'a>> + 'a {
    root.descendent_elements().filter(move |e| e.value().name() == name)
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn text_of(element: ElementRef<'_>) -> String {
    normalize(&element.text().collect::<String>())
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn meta_content<'a>(root: ElementRef<'a>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| {
        elements_named(root, "meta")
            .find(|meta| {
                let v = meta.value();
                [v.attr("name"), v.attr("property"), v.attr("itemprop")]
                    .into_iter()
                    .flatten()
                    .any(|k| k.eq_ignore_ascii_case(key))
            })
            .and_then(|meta| meta.value().attr("content"))
            .map(normalize)
            .and_then(non_empty)
    })
}

fn title(root: ElementRef<'_>) -> Option<String> {
    elements_named(root, "title")
        .next()
        .map(text_of)
        .and_then(non_empty)
        .or_else(|| meta_content(root, &["og:title", "twitter:title"]))
        .or_else(|| elements_named(root, "h1").next().map(text_of).and_then(non_empty))
}

fn byline(root: ElementRef<'_>) -> Option<String> {
    let looks_like_a_name = |text: &String| text.chars().count() <= 100 && !text.starts_with("http");
    meta_content(root, &["author", "article:author", "dc.creator"])
        .filter(looks_like_a_name)
        .or_else(|| {
            root.descendent_elements()
                .filter(|e| {
                    let v = e.value();
                    v.attr("rel") == Some("author")
                        || v.attr("itemprop") == Some("author")
                        || v.attr("class")
                            .is_some_and(|c| c.to_ascii_lowercase().contains("byline"))
                })
                .map(text_of)
                .find(|text| !text.is_empty() && looks_like_a_name(text))
        })
}

fn published(root: ElementRef<'_>) -> Option<String> {
    meta_content(
        root,
        &[
            "article:published_time",
            "datePublished",
            "date",
            "pubdate",
            "publish-date",
            "dc.date",
        ],
    )
    .or_else(|| {
        elements_named(root, "time").find_map(|t| t.value().attr("datetime").map(normalize).and_then(non_empty))
    })
}

/// Picks the element whose text is the page's main content.
fn content_root(root: ElementRef<'_>) -> ElementRef<'_> {
    let excluded = excluded_elements(root);
    let article = elements_named(root, "article")
        .filter(|a| !excluded.contains(&a.id()))
        .map(|a| (visible_text(a).iter().map(|l| l.chars().count()).sum::<usize>(), a))
        .max_by_key(|(len, _)| *len);
    if let Some((len, article)) = article
        && len >= MIN_ARTICLE_CHARS
    {
        return article;
    }
    if let Some(main) = root
        .descendent_elements()
        .find(|e| (e.value().name() == "main" || e.value().attr("role") == Some("main")) && !excluded.contains(&e.id()))
    {
        return main;
    }
    densest_block(root, &excluded)
        .or_else(|| elements_named(root, "body").next())
        .unwrap_or(root)
}

/// The block with the highest paragraph score, Readability-style.
fn densest_block<'a>(root: ElementRef<'a>, excluded: &HashSet<NodeId>) -> Option<ElementRef<'a>> {
    let mut scores: HashMap<NodeId, (ElementRef<'a>, f64)> = HashMap::new();
    for paragraph in root
        .descendent_elements()
        .filter(|e| PARAGRAPHS.contains(&e.value().name()))
    {
        let text = text_of(paragraph);
        let chars = text.chars().count();
        if chars < MIN_PARAGRAPH_CHARS || excluded.contains(&paragraph.id()) {
            continue;
        }
        let score = 1.0 + text.matches([',', '，']).count() as f64 + (chars as f64 / 100.0).floor().min(3.0);
        let mut ancestors = paragraph.ancestors().filter_map(ElementRef::wrap);
        for share in [1.0, 0.5] {
            let Some(ancestor) = ancestors.next() else { break };
            scores.entry(ancestor.id()).or_insert((ancestor, 0.0)).1 += score * share;
        }
    }
    scores
        .into_values()
        .map(|(element, score)| (element, score * (1.0 - link_density(element))))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(element, _)| element)
}

/// The share of an element's text that sits inside links.
fn link_density(element: ElementRef<'_>) -> f64 {
    let total = text_of(element).chars().count();
    if total == 0 {
        return 0.0;
    }
    let links: usize = elements_named(element, "a").map(|a| text_of(a).chars().count()).sum();
    links as f64 / total as f64
}

/// The readable lines of `root`'s subtree.
fn visible_text(root: ElementRef<'_>) -> Vec<String> {
    let mut lines = Lines::default();
    let mut skipped: Option<NodeId> = None;
    let mut pre_depth = 0usize;
    let mut article_depth = usize::from(
        root.ancestors()
            .filter_map(ElementRef::wrap)
            .any(|a| a.value().name() == "article"),
    );

    for edge in root.traverse() {
        match edge {
            Edge::Open(node) => {
                if skipped.is_some() {
                    continue;
                }
                match node.value() {
                    Node::Text(text) => {
                        if pre_depth > 0 {
                            lines.push_preformatted(text);
                        } else {
                            lines.push_text(text);
                        }
                    }
                    Node::Element(element) => {
                        let Some(element_ref) = ElementRef::wrap(node) else {
                            continue;
                        };
                        if node.id() != root.id() && is_excluded(element_ref, article_depth > 0) {
                            skipped = Some(node.id());
                            continue;
                        }
                        let name = element.name();
                        if BLOCKS.contains(&name) {
                            lines.break_line();
                        } else if matches!(name, "td" | "th") {
                            lines.space = true;
                        }
                        if name == "pre" {
                            pre_depth += 1;
                        }
                        if name == "article" {
                            article_depth += 1;
                        }
                    }
                    _ => {}
                }
            }
            Edge::Close(node) => {
                if skipped == Some(node.id()) {
                    skipped = None;
                    continue;
                }
                if skipped.is_some() {
                    continue;
                }
                if let Node::Element(element) = node.value() {
                    let name = element.name();
                    if BLOCKS.contains(&name) {
                        lines.break_line();
                    }
                    if name == "pre" {
                        pre_depth = pre_depth.saturating_sub(1);
                    }
                    if name == "article" {
                        article_depth = article_depth.saturating_sub(1);
                    }
                }
            }
        }
    }
    lines.break_line();
    lines.lines
}

/// Accumulates text into lines, collapsing whitespace the way a browser renders it.
#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    line: String,
    /// A space is due before the next word.
    space: bool,
}

impl Lines {
    fn push_text(&mut self, text: &str) {
        if text.starts_with(char::is_whitespace) {
            self.space = true;
        }
        let mut wrote = false;
        for word in text.split_whitespace() {
            let word: String = word.chars().filter(|c| !c.is_control()).collect();
            if word.is_empty() {
                continue;
            }
            if (self.space || wrote) && !self.line.is_empty() {
                self.line.push(' ');
            }
            self.space = false;
            self.line.push_str(&word);
            wrote = true;
        }
        if wrote {
            self.space = text.ends_with(char::is_whitespace);
        }
    }

    fn push_preformatted(&mut self, text: &str) {
        let mut parts = text.split('\n');
        if let Some(first) = parts.next() {
            self.line.push_str(first.trim_end_matches('\r'));
        }
        for part in parts {
            self.break_line();
            self.line.push_str(part.trim_end_matches('\r'));
        }
    }

    /// Ends the current line. Only the end is trimmed: text lines never start with a space, and preformatted
    /// lines keep their indentation.
    fn break_line(&mut self) {
        let line = self.line.trim_end();
        if !line.trim_start().is_empty() {
            self.lines.push(line.to_owned());
        }
        self.line.clear();
        self.space = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_limit_keeps_text_and_shallow_pages() {
        let shallow = "<div><p>a<p>b<ul><li>c<li>d</ul><img src=x><br/></div>";
        assert!(matches!(limit_nesting(shallow, 3), std::borrow::Cow::Borrowed(_)));
        let limited = limit_nesting("<div><section><span>x</span></section></div>", 2);
        assert_eq!(limited, "<div><section>x</span></section></div>");
        // Tags inside scripts and comments-like raw text do not count, and scripts are never dropped.
        let script = "<div><script>if (a<b) { x = '<div><div><div>'; }</script><span>y</span></div>";
        assert_eq!(limit_nesting(script, 2), script);
        let deep_script = "<div><div><script>s</script></div></div>";
        assert_eq!(limit_nesting(deep_script, 1), "<div><script>s</script></div></div>");
    }

    const NEWS: &str = r#"<!doctype html>
<html><head><title>Rust 2024 ships</title>
<meta name="author" content="Ferris Crab">
<meta property="article:published_time" content="2025-02-20T10:00:00Z">
<style>body { color: red }</style><script>var tracking = "noise";</script></head>
<body>
  <header class="site-header"><a href="/">Home</a> <a href="/blog">Blog</a></header>
  <nav><ul><li>Docs</li><li>Community</li></ul></nav>
  <div class="sidebar">Popular posts you might like</div>
  <article>
    <header><h1>Rust 2024 is stable</h1></header>
    <p>The Rust team is happy to announce a new edition, which brings   several changes to the language.</p>
    <p>Editions are opt-in, so existing code keeps compiling, and crates of different editions work together.</p>
    <ul><li>RPIT lifetime capture rules</li><li>if let temporary scope</li></ul>
    <pre>fn main() {
    println!("hi");
}</pre>
    <div style="display: none">hidden text</div>
    <div class="share-buttons">Share on social media</div>
  </article>
  <footer>Copyright 2025</footer>
  <script>console.log("more noise")</script>
</body></html>"#;

    #[test]
    fn extracts_the_article_without_noise() {
        let article = extract_article(NEWS);
        assert_eq!(article.title.as_deref(), Some("Rust 2024 ships"));
        assert_eq!(article.byline.as_deref(), Some("Ferris Crab"));
        assert_eq!(article.published.as_deref(), Some("2025-02-20T10:00:00Z"));
        assert_eq!(
            article.text,
            "Rust 2024 is stable\n\
             The Rust team is happy to announce a new edition, which brings several changes to the language.\n\
             Editions are opt-in, so existing code keeps compiling, and crates of different editions work together.\n\
             RPIT lifetime capture rules\n\
             if let temporary scope\n\
             fn main() {\n    println!(\"hi\");\n}"
        );
        for noise in [
            "noise",
            "Home",
            "Docs",
            "Popular",
            "hidden",
            "Share",
            "Copyright",
            "color",
        ] {
            assert!(!article.text.contains(noise), "{noise} leaked into {:?}", article.text);
        }
    }

    #[test]
    fn falls_back_to_the_densest_block() {
        let html = format!(
            r#"<html><body>
            <div id="menu"><a href="/a">A link</a> <a href="/b">Another link</a></div>
            <div id="story"><p>{p}</p><p>{p}</p><p>{p}</p></div>
            <div class="links"><p><a href="/x">{p}</a></p></div>
            </body></html>"#,
            p = "A paragraph with enough words, commas, and length to count as content."
        );
        let article = extract_article(&html);
        assert_eq!(article.title, None);
        assert_eq!(article.text.lines().count(), 3, "{:?}", article.text);
        assert!(!article.text.contains("A link"));
    }

    #[test]
    fn inline_elements_keep_their_spacing() {
        let article = extract_article(
            "<main><p>Hello <b>big</b> <i>world</i>!<br>Next line</p><table><tr><td>a</td><td>b</td></tr></table></main>",
        );
        assert_eq!(article.text, "Hello big world!\nNext line\na b");
    }

    #[test]
    fn survives_deep_nesting_and_empty_input() {
        let deep = "<div>".repeat(50_000) + "deep <b>text</b>" + &"</div>".repeat(50_000);
        let started = std::time::Instant::now();
        assert_eq!(extract_article(&deep).text, "deep text");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(extract_article("<div>"), Article::default());
        assert_eq!(extract_article(""), Article::default());
    }
}
