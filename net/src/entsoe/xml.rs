//! A small element tree read with `quick-xml`, for the inbound documents, and the escaping the
//! writers use. The tree keeps what the ENTSO-E documents carry: element local names, the
//! root's namespace, attributes and text; comments and processing instructions are dropped.

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

/// One element: its local name, attributes, text (concatenated) and children.
#[derive(Clone, Debug, Default)]
pub struct Element {
    /// The local name (the prefix is dropped; the namespace is checked on the root only).
    pub name: String,
    /// The namespace the element's name is bound to, if any.
    pub namespace: Option<String>,
    /// Attributes by local name, in document order.
    pub attributes: Vec<(String, String)>,
    /// The element's own text, entities resolved, trimmed.
    pub text: String,
    /// The child elements in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// The children named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first child named `name`.
    pub fn first(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a whole document into its root element; the error says where the XML is broken.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let position = reader.buffer_position();
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("not well-formed XML near byte {position}: {e}"))?;
        let namespace = match ns {
            ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
            _ => None,
        };
        match event {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err("content after the root element".into());
            }
            Event::Start(e) => stack.push(start(&e, namespace)?),
            Event::Empty(e) => {
                let el = start(&e, namespace)?;
                close(&mut stack, &mut root, el);
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| "an end tag without a start tag".to_string())?;
                close(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t
                        .decode()
                        .map_err(|e| format!("text near byte {position}: {e}"))?;
                    top.text.push_str(&s);
                } else if !t.decode().map(|s| s.trim().is_empty()).unwrap_or(false) {
                    return Err("text outside the root element".into());
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t
                        .decode()
                        .map_err(|e| format!("CDATA near byte {position}: {e}"))?;
                    top.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r
                            .decode()
                            .map_err(|e| format!("entity near byte {position}: {e}"))?;
                        match name.as_ref() {
                            "amp" => "&".into(),
                            "lt" => "<".into(),
                            "gt" => ">".into(),
                            "quot" => "\"".into(),
                            "apos" => "'".into(),
                            other => {
                                return Err(format!(
                                    "unknown entity `&{other};` near byte {position}"
                                ));
                            }
                        }
                    }
                    Err(e) => {
                        return Err(format!("bad character reference near byte {position}: {e}"));
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&ch);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(format!(
            "the document ends inside <{}>",
            stack[stack.len() - 1].name
        ));
    }
    root.ok_or_else(|| "the document has no root element".into())
}

fn start(
    e: &quick_xml::events::BytesStart<'_>,
    namespace: Option<String>,
) -> Result<Element, String> {
    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
    let mut attributes = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| format!("<{name}>: bad attribute: {err}"))?;
        let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
        if a.key.as_ref().starts_with(b"xmlns") {
            continue;
        }
        let value = a
            .unescape_value()
            .map_err(|err| format!("<{name}> attribute `{key}`: {err}"))?
            .into_owned();
        attributes.push((key, value));
    }
    Ok(Element {
        name,
        namespace,
        attributes,
        text: String::new(),
        children: Vec::new(),
    })
}

fn close(stack: &mut [Element], root: &mut Option<Element>, mut el: Element) {
    el.text = el.text.trim().to_string();
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// Escapes text for element content and attribute values.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// Writes documents line by line with two-space indentation.
#[derive(Default)]
pub struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    /// A document with the XML declaration and the root element bound to `namespace`.
    pub fn new(root: &str, namespace: &str) -> Self {
        let mut w = Writer {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            depth: 0,
        };
        w.line(&format!("<{root} xmlns=\"{}\">", escape(namespace)));
        w.depth = 1;
        w
    }

    fn line(&mut self, s: &str) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
        self.out.push_str(s);
        self.out.push('\n');
    }

    /// `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: &str) {
        self.line(&format!("<{name}>{}</{name}>", escape(text)));
    }

    /// `<name codingScheme="scheme">code</name>`.
    pub fn coded(&mut self, name: &str, scheme: &str, code: &str) {
        self.line(&format!(
            "<{name} codingScheme=\"{}\">{}</{name}>",
            escape(scheme),
            escape(code)
        ));
    }

    /// Opens `<name>`.
    pub fn open(&mut self, name: &str) {
        self.line(&format!("<{name}>"));
        self.depth += 1;
    }

    /// Closes `</name>`.
    pub fn close(&mut self, name: &str) {
        self.depth -= 1;
        self.line(&format!("</{name}>"));
    }

    /// Closes the root and returns the document.
    pub fn finish(mut self, root: &str) -> String {
        self.depth = 0;
        self.line(&format!("</{root}>"));
        self.out
    }
}
