//! Unit tests of the recipient list reader: CSV and JSON-lines rows,
//! rejections with their lines, and recovery after malformed rows.

use super::*;
use volley_spool::Vars;

fn write(name: &str, text: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    std::fs::write(&p, text).unwrap();
    (d, p)
}

#[test]
fn csv_rows_and_rejections_name_lines() {
    let (_d, p) = write(
        "r.csv",
        b"name,email,city\nAda,ada@x.test,London\nBad,no-at-sign,Paris\nShort,s@x.test\n\"Multi\nline\",m@x.test,Rome\nEve,eve@y.test,\xff\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    assert_eq!(r.columns, vec!["name", "city"]);
    let items = r.next_batch(100).unwrap();
    assert_eq!(items.len(), 5, "{items:?}");
    let Item::Row(a) = &items[0] else { panic!() };
    assert_eq!((a.row, a.email.as_str()), (1, "ada@x.test"));
    assert_eq!(
        Vars::decode(&a.vars).unwrap(),
        Vars::Columns(vec!["Ada", "London"])
    );
    let Item::Rejected(b) = &items[1] else {
        panic!()
    };
    assert_eq!(b.line, 3);
    assert!(b.reason.contains("invalid address"), "{}", b.reason);
    let Item::Rejected(c) = &items[2] else {
        panic!()
    };
    assert_eq!(c.line, 4);
    assert!(c.reason.contains("2 fields"), "{}", c.reason);
    let Item::Row(m) = &items[3] else { panic!() };
    assert_eq!((m.row, m.email.as_str()), (4, "m@x.test"));
    let Item::Rejected(e) = &items[4] else {
        panic!("{:?}", items[4])
    };
    assert_eq!(e.line, 7);
    assert!(r.next_batch(10).unwrap().is_empty());
}

/// (row, email) of accepted rows and lines of rejected ones.
fn outline(items: &[Item]) -> (Vec<(u32, &str)>, Vec<u64>) {
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    for i in items {
        match i {
            Item::Row(r) => rows.push((r.row, r.email.as_str())),
            Item::Rejected(r) => rejected.push(r.line),
        }
    }
    (rows, rejected)
}

#[test]
fn a_stray_quote_costs_its_own_row_only() {
    // the quote opened on line 3 runs on to the one on line 5
    let (_d, p) = write(
        "r.csv",
        b"name,email,city\nAda,ada@x.test,London\n\"Bob,bob@x.test,Paris\nCy,cy@x.test,Rome\nDi,di@x.test,\"Oslo\"\nEd,ed@x.test,Bern\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    let (rows, rejected) = outline(&items);
    assert_eq!(
        rows,
        vec![
            (1, "ada@x.test"),
            (3, "cy@x.test"),
            (4, "di@x.test"),
            (5, "ed@x.test")
        ],
        "{items:?}"
    );
    assert_eq!(rejected, vec![3]);
}

#[test]
fn an_unterminated_quote_does_not_swallow_the_rest_of_the_file() {
    // CRLF line ends, and a quote never closed: the field runs to the end
    let (_d, p) = write(
        "r.csv",
        b"name,email\r\nAda,ada@x.test\r\n\"Bob,bob@x.test\r\nCy,cy@x.test\r\nDi,di@x.test\r\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    let (rows, rejected) = outline(&items);
    assert_eq!(
        rows,
        vec![(1, "ada@x.test"), (3, "cy@x.test"), (4, "di@x.test")],
        "{items:?}"
    );
    assert_eq!(rejected, vec![3]);
    assert!(r.next_batch(10).unwrap().is_empty());
}

#[test]
fn a_rejected_quoted_row_over_two_lines_loses_nothing_after_it() {
    // a proper multi-line field, but one column short: its second line
    // is read again as a row of its own (and rejected too)
    let (_d, p) = write(
        "r.csv",
        b"name,email,city\n\"Multi\nline\",m@x.test\nAda,ada@x.test,London\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    let (rows, rejected) = outline(&items);
    assert_eq!(rows, vec![(3, "ada@x.test")], "{items:?}");
    assert_eq!(rejected, vec![2, 3]);
}

#[test]
fn a_well_formed_row_over_two_lines_stays_one_row() {
    // rejected for its content (a line break in the address): the address
    // on its second line is part of the field, not a recipient
    let (_d, p) = write(
        "r.csv",
        b"email,name\n\"bad@x.test\nvictim@x.test\",A\nok@x.test,B\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    let (rows, rejected) = outline(&items);
    assert_eq!(rows, vec![(2, "ok@x.test")], "{items:?}");
    assert_eq!(rejected, vec![2]);
}

#[test]
fn a_row_of_invalid_utf8_over_two_lines_stays_one_row() {
    // the field count is right: the quoting is sound, and the address on
    // the field's second line is text, not a recipient
    let (_d, p) = write(
        "r.csv",
        b"name,email\n\"Ren\xe9\nx,victim@x.test\n\",ok@x.test\nB,b@x.test\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    let (rows, rejected) = outline(&items);
    assert_eq!(rows, vec![(2, "b@x.test")], "{items:?}");
    assert_eq!(rejected, vec![2]);
}

#[test]
fn an_overlong_record_is_cut_off_and_reading_goes_on() {
    use super::csv_source::MAX_RECORD;
    // an unterminated quote on line 3 before more than MAX_RECORD bytes of
    // rows, then a single line longer than MAX_RECORD
    let mut text = b"email,n\na@x.test,1\n\"b@x.test,2\n".to_vec();
    let mut n = 0;
    while (text.len() as u64) < 2 * MAX_RECORD {
        text.extend_from_slice(format!("r{n}@x.test,{n}\n").as_bytes());
        n += 1;
    }
    let long_line = 4 + n;
    text.extend(std::iter::repeat_n(b'x', 2 * MAX_RECORD as usize));
    text.extend_from_slice(b"@x.test,9\nz@x.test,10\n");
    let (_d, p) = write("r.csv", &text);
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(1_000_000).unwrap();
    let (rows, rejected) = outline(&items);
    assert_eq!(rejected, vec![3, long_line as u64], "{:?}", &items[..3]);
    // cut off at the cap, not held in memory to the end of the file; each
    // rejection says what happened
    let reasons: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Item::Rejected(x) => Some(x.reason.as_str()),
            _ => None,
        })
        .collect();
    let limit = format!("{MAX_RECORD} bytes, the limit for a row");
    assert!(
        reasons[0].contains("runs over several lines past"),
        "{}",
        reasons[0]
    );
    assert!(reasons[0].contains(&limit), "{}", reasons[0]);
    assert!(reasons[1].starts_with("line is over"), "{}", reasons[1]);
    assert!(reasons[1].contains(&limit), "{}", reasons[1]);
    assert!(!reasons[1].contains("several lines"), "{}", reasons[1]);
    assert_eq!(rows.len(), 1 + n + 1);
    assert_eq!(rows[1], (3, "r0@x.test"));
    assert_eq!(rows.last().unwrap().1, "z@x.test");
    assert!(r.next_batch(10).unwrap().is_empty());
}

/// The lines of `items`' rejections, with their reasons.
fn rejections(items: &[Item]) -> Vec<(u64, &str)> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Rejected(r) => Some((r.line, r.reason.as_str())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_unterminated_quote_in_the_last_column_costs_its_own_row_only() {
    // the field count comes out right: the parser accepts the quoted field
    // running to the end of the file
    for eol in ["\n", "\r\n"] {
        let text = "email,name,note\nq1@a.test,Q1,n1\nq3@a.test,Q3,\"unterminated\nq4@a.test,Q4,n4\nq5@a.test,Q5,n5\n"
            .replace('\n', eol);
        let (_d, p) = write("r.csv", text.as_bytes());
        let mut r = ListReader::open(&p).unwrap();
        let items = r.next_batch(100).unwrap();
        let (rows, _) = outline(&items);
        assert_eq!(
            rows,
            vec![(1, "q1@a.test"), (3, "q4@a.test"), (4, "q5@a.test")],
            "{items:?}"
        );
        let rej = rejections(&items);
        assert_eq!(rej.len(), 1, "{items:?}");
        assert_eq!(rej[0].0, 3);
        assert!(rej[0].1.contains("never closed"), "{}", rej[0].1);
        assert!(r.next_batch(10).unwrap().is_empty());
    }
}

#[test]
fn a_stray_quote_in_the_last_column_closed_by_a_later_quote_costs_its_own_row_only() {
    let (_d, p) = write(
        "r.csv",
        b"email,name,city\nq3@a.test,Q3,\"Rome\nq4@a.test,Q4,Paris\nq5@a.test,Q5,\"Oslo\"\nq6@a.test,Q6,Bern\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    let (rows, rejected) = outline(&items);
    assert_eq!(
        rows,
        vec![(2, "q4@a.test"), (3, "q5@a.test"), (4, "q6@a.test")],
        "{items:?}"
    );
    assert_eq!(rejected, vec![2]);
}

#[test]
fn a_quote_left_open_on_the_last_line_is_rejected() {
    let (_d, p) = write("r.csv", b"email,name\na@x.test,A\nb@x.test,\"B");
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    let (rows, rejected) = outline(&items);
    assert_eq!(rows, vec![(1, "a@x.test")], "{items:?}");
    assert_eq!(rejected, vec![3]);
}

/// Writes `text` into a FIFO at `name` from another thread.
fn fifo(
    name: &str,
    text: &'static [u8],
) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<()>) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    let made = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .unwrap();
    assert!(made.success());
    let writer = {
        let p = p.clone();
        std::thread::spawn(move || std::fs::write(p, text).unwrap())
    };
    (d, p, writer)
}

#[test]
fn an_unterminated_quote_in_a_pipe_is_rejected_naming_its_line() {
    // a pipe cannot be read twice: the lines the field ran over are lost,
    // but not without a word
    let (_d, p, writer) = fifo(
        "r.csv",
        b"email,name,note\nq1@a.test,Q1,n1\nq3@a.test,Q3,\"unterminated\nq4@a.test,Q4,n4\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    writer.join().unwrap();
    let (rows, _) = outline(&items);
    assert_eq!(rows, vec![(1, "q1@a.test")], "{items:?}");
    let rej = rejections(&items);
    assert_eq!(rej.len(), 1, "{items:?}");
    assert_eq!(rej[0].0, 3);
    assert!(rej[0].1.contains("never closed"), "{}", rej[0].1);
    assert!(rej[0].1.contains("cannot be read again"), "{}", rej[0].1);
}

#[test]
fn a_locator_finds_rows_lines() {
    // the parser's count is short after CRLF line ends and blank lines
    let (_d, p) = write(
        "r.csv",
        b"email,n\r\na@x.test,1\r\n\r\nb@x.test,2\r\n\"c@x.test\",\"3\r\n3\"\r\nd@x.test,4\r\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    let loc = r.locator().unwrap();
    let lines: Vec<u64> = items
        .iter()
        .map(|i| match i {
            Item::Row(r) => loc.line(r.start),
            Item::Rejected(r) => panic!("{r:?}"),
        })
        .collect();
    assert_eq!(lines, vec![2, 4, 5, 7]);
    // JSON lines: exact as read
    let (_d, p) = write(
        "r.jsonl",
        b"{\"email\":\"a@x.test\"}\n\n{\"email\":\"b@x.test\"}\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    let loc = r.locator().unwrap();
    assert!(
        matches!(&items[1], Item::Row(r) if loc.line(r.start) == 3),
        "{items:?}"
    );
}

#[test]
fn a_list_from_a_pipe_reads_past_rejected_rows() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("r.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .unwrap();
    assert!(made.success());
    let writer = {
        let p = p.clone();
        std::thread::spawn(move || {
            std::fs::write(p, b"email,n\na@x.test,1\nbad,2\nshort\nb@x.test,4\n").unwrap()
        })
    };
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    writer.join().unwrap();
    let (rows, rejected) = outline(&items);
    assert_eq!(rows, vec![(1, "a@x.test"), (4, "b@x.test")], "{items:?}");
    assert_eq!(rejected, vec![3, 4]);
}

#[test]
fn rejections_name_the_right_line_with_crlf_and_blank_lines() {
    let (_d, p) = write(
        "r.csv",
        b"email,n\r\na@x.test,1\r\nbad,2\r\n\r\n\r\nalso-bad,3\r\nb@x.test,4\r\nc@x.test\r\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    let (rows, rejected) = outline(&items);
    assert_eq!(rows, vec![(1, "a@x.test"), (4, "b@x.test")], "{items:?}");
    assert_eq!(rejected, vec![3, 6, 8], "{items:?}");
}

#[test]
fn csv_without_email_column() {
    let (_d, p) = write("r.csv", b"name,mail\na,b@c.test\n");
    assert!(matches!(
        ListReader::open(&p),
        Err(ListError::NoEmail { .. })
    ));
}

#[test]
fn overlong_json_line_is_rejected_and_reading_goes_on() {
    let mut text = b"{\"email\":\"a@x.test\"}\r\n{\"email\":\"".to_vec();
    text.extend(std::iter::repeat_n(b'x', MAX_LINE * 3));
    text.extend_from_slice(b"\"}\n{\"email\":\"b@y.test\"}\n{\"email\":\"c@z.test\"}");
    let (_d, p) = write("r.jsonl", &text);
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    assert_eq!(items.len(), 4, "{items:?}");
    assert!(matches!(&items[0], Item::Row(r) if r.email == "a@x.test"));
    assert!(
        matches!(&items[1], Item::Rejected(r) if r.line == 2 && r.reason.contains("longer than"))
    );
    assert!(matches!(&items[2], Item::Row(r) if r.row == 3 && r.email == "b@y.test"));
    // the last line has no newline
    assert!(matches!(&items[3], Item::Row(r) if r.row == 4 && r.email == "c@z.test"));
}

#[test]
fn jsonl_rows() {
    let (_d, p) = write(
        "r.jsonl",
        b"{\"email\":\"a@x.test\",\"vars\":{\"n\":{\"first\":\"A\"}}}\n\n{\"mail\":\"x\"}\nnot json\n{\"email\":\"b@y.test\"}\n",
    );
    let mut r = ListReader::open(&p).unwrap();
    let items = r.next_batch(100).unwrap();
    assert_eq!(items.len(), 4);
    assert!(
        matches!(&items[0], Item::Row(r) if Vars::decode(&r.vars).unwrap() == Vars::Json("{\"n\":{\"first\":\"A\"}}"))
    );
    assert!(matches!(&items[1], Item::Rejected(r) if r.line == 3));
    assert!(matches!(&items[2], Item::Rejected(r) if r.line == 4));
    assert!(matches!(&items[3], Item::Row(r) if r.row == 4 && r.email == "b@y.test"));
}

#[test]
fn batches_of_long_rows_are_bounded_in_bytes_and_lose_nothing() {
    let note = "x".repeat(1000);
    let mut csv = String::from("email,note\n");
    for i in 0..25 {
        csv.push_str(&format!("u{i}@x.test,{note}\n"));
        if i == 3 {
            csv.push_str("bad-address,short\n");
        }
    }
    let (_d, p) = write("long.csv", csv.as_bytes());
    let mut r = ListReader::open(&p).unwrap();
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let batch = r.next_batch_within(100, 4_500).unwrap();
        if batch.is_empty() {
            break;
        }
        sizes.push(batch.len());
        for item in batch {
            if let Item::Row(row) = item {
                rows.push(row.email);
            }
        }
    }
    // ~1,012 bytes a row: a batch ends with the row that reaches 4,500
    // bytes (five rows; the rejection counts for nothing)
    assert_eq!(sizes, vec![6, 5, 5, 5, 5]);
    let want: Vec<String> = (0..25).map(|i| format!("u{i}@x.test")).collect();
    assert_eq!(rows, want);
    // one row over the bound is still a batch of its own
    let mut r = ListReader::open(&p).unwrap();
    assert_eq!(r.next_batch_within(100, 1).unwrap().len(), 1);
}
