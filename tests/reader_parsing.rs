//! The reader's parsing, as a caller outside the crate uses it.

use std::net::{Ipv4Addr, SocketAddrV4};

use tracenat::reader::ReaderError;
use tracenat::reader::access_log::{AccessLogParser, JsonFields, LineError, LogFormat};
use tracenat::reader::attribute::{AttributeOptions, Summary, attribute};
use tracenat::reader::model::{
    Answer, Candidate, ClockNote, Evidence, MappingSource, Question, Verdict,
};
use tracenat::reader::time::{TimeError, format_time, format_time_ns, parse_time};

const S: u64 = 1_000_000_000;

#[test]
fn times_operators_paste() {
    let t = 971_211_336 * S;
    for text in [
        "2000-10-10T20:55:36Z",
        "2000-10-10 22:55:36+02:00",
        "971211336",
        "[10/Oct/2000:13:55:36 -0700]",
        "10/Oct/2000:13:55:36 -0700",
    ] {
        assert_eq!(parse_time(text), Ok(t), "{text}");
    }
    assert_eq!(format_time(t + 5_000_000), "2000-10-10T20:55:36.005Z");
    assert_eq!(parse_time(&format_time_ns(t + 7)), Ok(t + 7));
    assert!(matches!(
        parse_time("2000-10-10 13:55:36"),
        Err(TimeError::NoOffset { .. })
    ));
}

#[test]
fn each_log_format() {
    let lines = [
        (
            LogFormat::Common,
            r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 40213"#,
        ),
        (
            LogFormat::Combined,
            r#"203.0.113.7:40213 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 "-" "ua""#,
        ),
        (
            LogFormat::Json,
            r#"{"remote_addr":"203.0.113.7","remote_port":40213,"time":971211336,"request":"GET / HTTP/1.0"}"#,
        ),
    ];
    for (format, line) in lines {
        for given in [format, LogFormat::Auto] {
            let mut parser = AccessLogParser::new(given, JsonFields::default());
            let record = parser.parse(7, line).unwrap();
            assert_eq!(record.line_no, 7);
            assert_eq!(record.client_ip, Ipv4Addr::new(203, 0, 113, 7));
            assert_eq!(record.client_port, Some(40213), "{line}");
            assert_eq!(record.time_ns, 971_211_336 * S);
            assert_eq!(record.request, "GET / HTTP/1.0");
            assert_eq!(parser.format(), format);
        }
    }
    let mut parser = AccessLogParser::new(LogFormat::Auto, JsonFields::default());
    let v6 = r#"2001:db8::7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326"#;
    assert_eq!(parser.parse(1, v6), Err(LineError::NotIpv4));
}

struct OneSubscriber(Vec<Question>);

impl MappingSource for OneSubscriber {
    fn answer(&mut self, question: &Question) -> Result<Answer, ReaderError> {
        self.0.push(question.clone());
        let candidates = match question.public_port {
            Some(port) => vec![Candidate {
                box_name: None,
                subscriber: SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 23), 51000),
                public: SocketAddrV4::new(question.public_ip, port),
                ports: None,
                dest: None,
                protocol: 6,
                start_ns: None,
                end_ns: None,
                last_active_ns: None,
                evidence: Evidence::Mapping,
                holders: Default::default(),
            }],
            None => Vec::new(),
        };
        Ok(Answer::new(candidates, ClockNote::default()))
    }
}

#[test]
fn attribute_a_small_log() {
    let log = concat!(
        "203.0.113.7:40213 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1\n",
        "203.0.113.7 - - [10/Oct/2000:13:55:37 -0700] \"GET / HTTP/1.0\" 200 1\n",
        "garbage\n",
    );
    let mut parser = AccessLogParser::new(LogFormat::Auto, JsonFields::default());
    let mut source = OneSubscriber(Vec::new());
    let options = AttributeOptions {
        skew_ns: S,
        server: Some((Ipv4Addr::new(192, 0, 2, 80), Some(443))),
        ..AttributeOptions::default()
    };
    let mut out = Vec::new();
    let summary = attribute(log.as_bytes(), &mut parser, &mut source, &options, &mut out).unwrap();
    assert_eq!(
        summary,
        Summary {
            lines: 3,
            unique: 1,
            ambiguous: 0,
            none: 1,
            unparsed: 1,
        }
    );
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("unique 100.64.0.23:51000 (mapping)"),
        "{text}"
    );
    assert!(text.contains("line 3: unparsed:"), "{text}");
    assert!(
        text.ends_with(
            "2 requests: 1 unique, 0 ambiguous, 1 none, 1 unparsed (3 lines, common format)\n"
        ),
        "{text}"
    );
    let asked = &source.0[0];
    assert_eq!(asked.from_ns, 971_211_335 * S);
    assert_eq!(asked.to_ns, 971_211_337 * S);
    assert_eq!(asked.dest_port, Some(443));
    assert_eq!(Verdict::of(&[]), Verdict::None);
}

mod hostile {
    use proptest::prelude::*;
    use tracenat::reader::fuzz::attribute_bytes;

    const LINE: &str = "203.0.113.7:40214 - bob [10/Oct/2000:13:55:36 -0700] \"GET /x HTTP/1.0\" 200 1 \"-\" \"ua\"\n";

    proptest! {
        /// Binary junk, broken quoting and invalid UTF-8 among valid lines.
        #[test]
        fn junk_among_lines_never_panics(
            choice in any::<u8>(),
            pieces in prop::collection::vec(
                prop_oneof![
                    Just(LINE.as_bytes().to_vec()),
                    prop::collection::vec(any::<u8>(), 0..200),
                    Just(b"203.0.113.7 - \"bob [10/Oct/2000:13:55:36 -0700] \"GET\n".to_vec()),
                    Just(b"{\"remote_addr\":\"203.0.113.7:4\",\"time\":1,\"remote_user\":[1,{}]}\n".to_vec()),
                ],
                0..30,
            ),
        ) {
            let mut data = vec![choice];
            for piece in pieces {
                data.extend(piece);
            }
            attribute_bytes(&data);
        }
    }

    #[test]
    fn a_huge_line_and_one_actor_many_times() {
        let mut data = vec![0x80u8];
        data.extend(std::iter::repeat_n(b'"', 1 << 20));
        data.push(b'\n');
        for _ in 0..20_000 {
            data.extend_from_slice(LINE.as_bytes());
        }
        attribute_bytes(&data);
    }
}
