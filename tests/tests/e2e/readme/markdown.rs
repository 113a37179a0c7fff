//! README.md as the test reads it: the fenced code blocks that hold `grpcurl` commands, the
//! `<!-- readme-test: ... -->` marker right before each, and the `# ...` comment lines after each
//! command (what it is expected to answer).

/// A fenced code block with at least one `grpcurl` command.
#[derive(Debug)]
pub struct Block {
    /// 1-based line of the opening fence.
    pub line: usize,
    /// What the block needs; `None` when the marker is missing (an error the caller reports).
    pub marker: Option<Marker>,
    /// The commands, in order.
    pub commands: Vec<Command>,
    /// Every line of the block, commands or not (a stack may read its set-up from them).
    pub lines: Vec<String>,
}

/// `<!-- readme-test: stack=NAME [setup=A,B] -->` or `<!-- readme-test: skip: REASON -->`.
#[derive(Debug, PartialEq, Eq)]
pub enum Marker {
    /// Run the block against stack `stack`, after the named setups.
    Run {
        /// Which processes the block talks to.
        stack: String,
        /// What must exist before the block runs (e.g. `parked-saga`).
        setup: Vec<String>,
    },
    /// Do not run the block, for the reason given (printed by the test).
    Skip(String),
}

/// One `grpcurl` command line (continuation lines joined).
#[derive(Debug)]
pub struct Command {
    /// 1-based line where the command starts.
    pub line: usize,
    /// The words, as a POSIX shell splits them (`grpcurl` first).
    pub args: Vec<String>,
    /// The comment lines right after the command, without `# `.
    pub expected: Vec<String>,
}

const MARKER: &str = "<!-- readme-test:";

/// The blocks of `markdown` that contain `grpcurl` commands.
pub fn blocks(markdown: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut marker = None;
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index].trim();
        if line.starts_with(MARKER) {
            marker = Some(parse_marker(line).map_err(|e| format!("README.md:{}: {e}", index + 1))?);
        } else if line.starts_with("```") {
            let end = (index + 1..lines.len())
                .find(|&i| lines[i].trim_start().starts_with("```"))
                .ok_or_else(|| format!("README.md:{}: unclosed code block", index + 1))?;
            let commands = commands(&lines, index + 1, end)?;
            if !commands.is_empty() {
                blocks.push(Block {
                    line: index + 1,
                    marker: marker.take(),
                    commands,
                    lines: lines[index + 1..end]
                        .iter()
                        .map(|l| (*l).to_owned())
                        .collect(),
                });
            }
            marker = None;
            index = end;
        } else if !line.is_empty() {
            // A marker applies to the block right after it, blank lines aside.
            marker = None;
        }
        index += 1;
    }
    Ok(blocks)
}

fn parse_marker(line: &str) -> Result<Marker, String> {
    let body = line
        .strip_prefix(MARKER)
        .and_then(|rest| rest.strip_suffix("-->"))
        .ok_or("a marker is one line: <!-- readme-test: ... -->")?
        .trim();
    if let Some(reason) = body.strip_prefix("skip:") {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err("skip: needs a reason".to_owned());
        }
        return Ok(Marker::Skip(reason.to_owned()));
    }
    let mut stack = None;
    let mut setup = Vec::new();
    for pair in body.split_whitespace() {
        match pair.split_once('=') {
            Some(("stack", name)) => stack = Some(name.to_owned()),
            Some(("setup", names)) => setup.extend(names.split(',').map(str::to_owned)),
            _ => {
                return Err(format!(
                    "unknown marker word {pair:?} (stack=, setup=, skip:)"
                ));
            }
        }
    }
    let stack = stack.ok_or("the marker names no stack=")?;
    Ok(Marker::Run { stack, setup })
}

/// The `grpcurl` commands between lines `start` and `end` (0-based, end exclusive).
fn commands(lines: &[&str], start: usize, end: usize) -> Result<Vec<Command>, String> {
    let mut commands = Vec::new();
    let mut index = start;
    while index < end {
        let first = lines[index].trim_start();
        if !(first == "grpcurl" || first.starts_with("grpcurl ")) {
            index += 1;
            continue;
        }
        let line = index + 1;
        // A command goes on while a line ends with `\` or a quote is open.
        let mut text = first.to_owned();
        let args = loop {
            let joined = text.replace("\\\n", " ");
            match shlex::split(&joined) {
                Some(args) if !text.ends_with('\\') => break args,
                _ if index + 1 < end => {
                    index += 1;
                    text.push('\n');
                    text.push_str(lines[index]);
                }
                _ => return Err(format!("README.md:{line}: the command never ends")),
            }
        };
        index += 1;
        let mut expected = Vec::new();
        while index < end {
            let Some(comment) = lines[index].trim_start().strip_prefix('#') else {
                break;
            };
            expected.push(comment.trim().to_owned());
            index += 1;
        }
        commands.push(Command {
            line,
            args,
            expected,
        });
    }
    Ok(commands)
}

#[test]
fn reads_markers_commands_continuations_and_expectations() {
    let markdown = "intro\n\n<!-- readme-test: stack=demo setup=parked-saga -->\n```sh\n\
        # why\ngrpcurl -plaintext localhost:50051 list\n# a.B\n# c.D\n\n\
        grpcurl -d '{\"a\":1,\n  \"b\":2}' \\\n  localhost:50051 x.Y/Z\n```\n\n```sh\nls\n```\n\
        ```sh\ngrpcurl localhost:50051 list\n```\n";
    let blocks = blocks(markdown).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        blocks[0].marker,
        Some(Marker::Run {
            stack: "demo".to_owned(),
            setup: vec!["parked-saga".to_owned()]
        })
    );
    let [list, call] = &blocks[0].commands[..] else {
        panic!("two commands: {blocks:?}")
    };
    assert_eq!(
        (list.line, &list.expected[..]),
        (6, &["a.B".to_owned(), "c.D".to_owned()][..])
    );
    assert_eq!(
        call.args,
        [
            "grpcurl",
            "-d",
            "{\"a\":1,\n  \"b\":2}",
            "localhost:50051",
            "x.Y/Z"
        ]
    );
    assert!(call.expected.is_empty());
    assert_eq!(
        blocks[1].marker, None,
        "a marker belongs to the next block only"
    );
    assert!(parse_marker("<!-- readme-test: skip: -->").is_err());
    assert!(parse_marker("<!-- readme-test: stak=demo -->").is_err());
}
