//! `kn-pararel data --download` against a loopback HTTP mirror of the two source repositories
//! (GitHub is unreachable here): every file arrives byte for byte, files already present are
//! kept, and a missing file is an error naming its URL.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;

mod common;

use kn_pararel::download::{download_from, sources, Mirrors};

/// Serves `root` over HTTP/1.0 on loopback until the process ends; returns the base URL.
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            // Drain the headers.
            let mut h = String::new();
            while reader.read_line(&mut h).map(|n| n > 2).unwrap_or(false) {
                h.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let mut out = stream;
            match std::fs::read(root.join(&path)) {
                Ok(body) => {
                    let _ = write!(out, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    let _ = out.write_all(&body);
                }
                Err(_) => {
                    let _ = write!(out, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    format!("http://{addr}")
}

/// A mirror laid out like the GitHub repositories, filled from the shared copy.
fn mirror(shared: &std::path::Path, skip: Option<&str>) -> (tempfile::TempDir, Mirrors) {
    let web = tempfile::tempdir().unwrap();
    let base = serve(web.path().to_path_buf());
    let m = Mirrors { pararel: format!("{base}/pararel/data"), dai: format!("{base}/dai/data") };
    for (url, rel) in sources(&m) {
        if skip.is_some_and(|s| rel.ends_with(s)) {
            continue;
        }
        let served = web.path().join(url.strip_prefix(&format!("{base}/")).unwrap());
        std::fs::create_dir_all(served.parent().unwrap()).unwrap();
        std::fs::copy(shared.join(&rel), served).unwrap();
    }
    (web, m)
}

#[test]
fn download_fetches_every_file_byte_for_byte_and_keeps_what_is_there() {
    let Some(shared) = common::pararel_data() else { return };
    let (_web, m) = mirror(&shared, None);
    let dir = tempfile::tempdir().unwrap();
    // One file already present (a resumed download): kept, not fetched again.
    std::fs::create_dir_all(dir.path().join("trex")).unwrap();
    std::fs::write(dir.path().join("trex/P17.jsonl"), "kept").unwrap();
    let n = download_from(dir.path(), &m).unwrap();
    let all = sources(&m);
    assert_eq!(n, all.len() - 1);
    for (_, rel) in &all {
        if rel == "trex/P17.jsonl" {
            assert_eq!(std::fs::read_to_string(dir.path().join(rel)).unwrap(), "kept");
            continue;
        }
        assert_eq!(std::fs::read(dir.path().join(rel)).unwrap(), std::fs::read(shared.join(rel)).unwrap(), "{rel}");
    }
    assert_eq!(download_from(dir.path(), &m).unwrap(), 0, "a second run fetches nothing");
}

#[test]
fn a_missing_file_is_an_error_naming_its_url_and_leaves_no_partial_file() {
    let Some(shared) = common::pararel_data() else { return };
    let (_web, m) = mirror(&shared, Some("query_pairs.json"));
    let dir = tempfile::tempdir().unwrap();
    let err = format!("{:#}", download_from(dir.path(), &m).unwrap_err());
    assert!(err.contains("/dai/data/PARAREL/query_pairs.json"), "{err}");
    assert!(!dir.path().join("dai2022/query_pairs.json").exists());
    assert!(!dir.path().join("dai2022/query_pairs.part").exists());
}
