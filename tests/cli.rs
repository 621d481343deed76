//! The `jraid` binary end to end, on files in temporary directories.
#![cfg(feature = "uring")]

use std::path::Path;
use std::process::{Command, Output};

fn jraid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jraid"))
        .args(args)
        .output()
        .expect("run jraid")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = jraid(args);
    assert!(
        o.status.success(),
        "jraid {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// The command fails cleanly: non-zero exit, `expect` in its message, no panic.
fn fails(args: &[&str], expect: &str) {
    let o = jraid(args);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "jraid {args:?} succeeded");
    assert!(
        err.contains(expect),
        "jraid {args:?}: expected {expect:?} in stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "jraid {args:?} panicked:\n{err}");
}

fn create(dir: &Path, block_size: &str) {
    create_with(dir, &["--block-size", block_size]);
}

/// A small volume (3 members of 8 MiB, 16 KiB strips, 1 MiB journal) with `extra` options.
fn create_with(dir: &Path, extra: &[&str]) {
    let d = dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "create",
        "--dir",
        d,
        "--members",
        "3",
        "--member-size",
        "8M",
        "--strip-kb",
        "16",
        "--journal-size",
        "1M",
    ];
    args.extend_from_slice(extra);
    ok(&args);
}

/// 1 MiB of 4 KiB random writes at queue depth 8 on the volume in `d`.
fn bench_writes(d: &str) {
    ok(&[
        "bench",
        "--dir",
        d,
        "--rw",
        "randwrite",
        "--bytes",
        "1M",
        "--qd",
        "8",
    ]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn create_bench_crash_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    create(&dir, "4096");
    let d = dir.to_str().unwrap();

    let out = ok(&["bench", "--dir", d, "--time", "1", "--qd", "16", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["rw"], "randwrite");
    assert!(v["ops"].as_u64().unwrap() > 0, "{v}");
    assert!(v["iops"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["errors"], 0);
    assert!(v["lat_us"]["p99"].as_u64().unwrap() >= v["lat_us"]["p50"].as_u64().unwrap());
    assert!(v["journal_record_writes"].as_u64().unwrap() > 0, "{v}");

    let out = ok(&[
        "bench",
        "--dir",
        d,
        "--rw",
        "randrw",
        "--bytes",
        "1M",
        "--reactors",
        "2",
    ]);
    assert!(out.contains("IOPS"), "{out}");

    // Two rounds: the second writer of each opens online, writing while the stripes the
    // first left listed are resynced in the background (a member lost between rounds would
    // make the next writer fail to open: the check's pretend failure is not recorded).
    let out = ok(&["crash-test", "--dir", d, "--rounds", "2", "--seconds", "1"]);
    assert!(out.contains("round 2:"), "{out}");
    assert!(out.contains("stripes resyncing online"), "{out}");
    assert!(out.contains(" 0 mismatches, 0 parity mismatches"), "{out}");

    let out = ok(&["check", "--dir", d]);
    assert!(out.contains("0 parity mismatches"), "{out}");

    let out = ok(&["status", "--dir", d]);
    assert!(out.contains("3 members"), "{out}");
    assert!(out.contains("record     generation"), "{out}");
}

/// A journal of two devices (alternate, then mirror): a kill -9 writer and its verification
/// with both, then with one of them gone (the restart resyncs every stripe, alternate, or
/// trusts the mirror's survivor, and goes on with it), and `status` says which is missing.
#[test]
fn two_journal_devices_go_on_without_one() {
    for (mode, lost) in [("alternate", "journal2"), ("mirror", "journal")] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let d = dir.to_str().unwrap();
        create_with(&dir, &["--journal-devices", "2", "--journal-mode", mode]);
        let out = ok(&["status", "--dir", d]);
        assert!(out.contains(&format!("of 2 ({mode})")), "{out}");
        let out = ok(&["crash-test", "--dir", d, "--rounds", "2", "--seconds", "1"]);
        assert!(out.contains(" 0 mismatches, 0 parity mismatches"), "{out}");
        std::fs::remove_file(dir.join(lost)).unwrap();
        let out = ok(&["status", "--dir", d]);
        assert!(out.contains("MISSING"), "{out}");
        let o = jraid(&["crash-test", "--dir", d, "--rounds", "2", "--seconds", "1"]);
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert!(o.status.success(), "{out}\n{err}");
        assert!(out.contains(" 0 mismatches, 0 parity mismatches"), "{out}");
        // A mirror's survivor holds every record (nothing recorded it dropped): no full
        // resync; an alternating pair's may miss the newest.
        let full = err.contains("every stripe is resynced");
        let trusted = err.contains("holds every record");
        assert_eq!(
            (full, trusted),
            (mode == "alternate", mode == "mirror"),
            "{err}"
        );
        let out = ok(&["check", "--dir", d]);
        assert!(out.contains("0 parity mismatches"), "{out}");
        // The mirror went on without the lost file: the members record it dropped.
        let out = ok(&["status", "--dir", d]);
        assert_eq!(out.contains("recorded dropped"), mode == "mirror", "{out}");
    }
}

/// `--journal-on-members`: no journal file; members 0 and 1 keep a mirrored copy in a
/// reserved area at their end. kill -9 writers recover from it (control: without the journal
/// the same check finds loss). Member 0 marked failed takes its copy with it: the volume goes
/// on with member 1's, which holds every record (no full resync), and the members record copy 0
/// dropped. A replacement for member 0 gets a blank copy; once rebuilt, the volume reads both
/// copies again, the next checkpoint reaches both and the drop is cleared.
#[test]
fn journal_on_members() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let d = dir.to_str().unwrap();
    create_with(&dir, &["--journal-on-members"]);
    assert!(!dir.join("journal").exists() && !dir.join("journal2").exists());
    let out = ok(&["status", "--dir", d]);
    assert!(
        out.contains("on the members: mirrored in members 0 and 1"),
        "{out}"
    );
    assert!(out.contains("of 2 (mirror), other device:"), "{out}");
    assert!(!out.contains("MISSING"), "{out}");
    fails(
        &[
            "create",
            "--dir",
            d,
            "--members",
            "3",
            "--member-size",
            "8M",
            "--journal-on-members",
            "--journal-devices",
            "2",
        ],
        "cannot be used with",
    );
    let out = ok(&["crash-test", "--dir", d, "--rounds", "2", "--seconds", "1"]);
    assert!(out.contains(" 0 mismatches, 0 parity mismatches"), "{out}");

    // Both copies made unreadable (their superblocks zeroed): no open, and no journal file
    // taken instead; the copies restored, it opens again.
    let area = {
        let st = ok(&["status", "--dir", d]);
        let at = st.split("at byte ").nth(1).unwrap();
        at.split_whitespace()
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let saved: Vec<Vec<u8>> = (0..2)
        .map(|m| {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join(format!("m{m}")))
                .unwrap();
            let mut b = vec![0u8; 4096];
            f.read_exact_at(&mut b, area).unwrap();
            f.write_all_at(&[0u8; 4096], area).unwrap();
            b
        })
        .collect();
    fails(&["status", "--dir", d], "not a jraid journal");
    let jx = tmp.path().join("jx");
    fails(
        &["set-journal", "--dir", d, "--journal", jx.to_str().unwrap()],
        "takes no journal file",
    );
    assert!(!jx.exists());
    for (m, b) in saved.iter().enumerate() {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(format!("m{m}")))
            .unwrap();
        f.write_all_at(b, area).unwrap();
    }

    ok(&["fail", "--dir", d, "--member", "0"]);
    let out = ok(&["status", "--dir", d]);
    assert!(
        out.contains("MISSING (member 0 is out of service and its journal copy with it)"),
        "{out}"
    );
    let o = jraid(&[
        "bench",
        "--dir",
        d,
        "--rw",
        "randwrite",
        "--bytes",
        "1M",
        "--qd",
        "8",
    ]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(err.contains("holds every record"), "{err}");
    assert!(!err.contains("every stripe is resynced"), "{err}");
    let out = ok(&["status", "--dir", d]);
    assert!(out.contains("device(s) 0 recorded dropped"), "{out}");

    let spare = tmp.path().join("new-m0");
    let out = ok(&[
        "replace",
        "--dir",
        d,
        "--member",
        "0",
        "--with",
        spare.to_str().unwrap(),
    ]);
    assert!(out.contains("member 0 rebuilt"), "{out}");
    let out = ok(&["status", "--dir", d]);
    assert!(!out.contains("MISSING"), "{out}");
    bench_writes(d);
    let out = ok(&["status", "--dir", d]);
    assert!(!out.contains("recorded dropped"), "{out}");
    let out = ok(&["crash-test", "--dir", d, "--rounds", "2", "--seconds", "1"]);
    assert!(out.contains(" 0 mismatches, 0 parity mismatches"), "{out}");
    let out = ok(&["check", "--dir", d]);
    assert!(out.contains("0 parity mismatches"), "{out}");

    // Control: the same check without the journal finds loss.
    let ctl = tmp.path().join("control");
    create_with(&ctl, &["--journal-on-members"]);
    let c = ctl.to_str().unwrap();
    let o = jraid(&[
        "crash-test",
        "--dir",
        c,
        "--rounds",
        "6",
        "--seconds",
        "1",
        "--no-journal",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("crash-test found"),
        "{}",
        text(&o.stderr)
    );
}

/// `--journal PATH --journal2 PATH`: the journal files elsewhere (as on other disks), linked
/// from the volume directory; losing one of them costs no write. A path that exists already is
/// refused, and nothing is left behind.
#[test]
fn journal_files_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (other, third) = (tmp.path().join("disk1"), tmp.path().join("disk2"));
    std::fs::create_dir_all(&other).unwrap();
    std::fs::create_dir_all(&third).unwrap();
    let taken = other.join("taken");
    std::fs::write(&taken, b"x").unwrap();
    let dir = tmp.path().join("vol");
    let d = dir.to_str().unwrap();
    let o = jraid(&[
        "create",
        "--dir",
        d,
        "--members",
        "3",
        "--member-size",
        "8M",
        "--journal",
        taken.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("already exists"),
        "{}",
        text(&o.stderr)
    );
    assert!(!dir.exists(), "a refused create left the directory");
    let (ja, jb) = (other.join("jA"), third.join("jB"));
    ok(&[
        "create",
        "--dir",
        d,
        "--members",
        "3",
        "--member-size",
        "8M",
        "--journal",
        ja.to_str().unwrap(),
        "--journal2",
        jb.to_str().unwrap(),
        "--journal-mode",
        "mirror",
    ]);
    assert!(dir
        .join("journal")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(dir
        .join("journal2")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    let out = ok(&["status", "--dir", d]);
    assert!(out.contains("of 2 (mirror)"), "{out}");
    let out = ok(&["crash-test", "--dir", d, "--rounds", "1", "--seconds", "1"]);
    assert!(out.contains(" 0 mismatches, 0 parity mismatches"), "{out}");
    std::fs::remove_file(&jb).unwrap();
    let out = ok(&["status", "--dir", d]);
    assert!(out.contains("MISSING"), "{out}");
    let out = ok(&["crash-test", "--dir", d, "--rounds", "1", "--seconds", "1"]);
    assert!(out.contains(" 0 mismatches, 0 parity mismatches"), "{out}");
}

#[test]
fn block_size_512() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    create(&dir, "512");
    let d = dir.to_str().unwrap();
    let out = ok(&[
        "bench", "--dir", d, "--bs", "512", "--bytes", "2M", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ops"], 4096);
    ok(&["check", "--dir", d]);
}

#[test]
fn bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    create(&a, "4096");
    create(&b, "4096");
    let case = |name: &str, prep: &dyn Fn(&Path)| {
        let d = tmp.path().join(name);
        copy_dir(&a, &d);
        prep(&d);
        d
    };
    let bench = |d: &Path, expect: &str| {
        fails(
            &["bench", "--dir", d.to_str().unwrap(), "--time", "1"],
            expect,
        );
        fails(&["status", "--dir", d.to_str().unwrap()], expect);
    };

    let d = case("missing", &|d| std::fs::remove_file(d.join("m1")).unwrap());
    bench(&d, "m1: missing member file");
    let d = case("nojournal", &|d| {
        std::fs::remove_file(d.join("journal")).unwrap()
    });
    bench(&d, "journal: missing journal file");

    let d = case("short", &|d| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("m2"))
            .unwrap();
        f.set_len(4 << 20).unwrap();
    });
    bench(&d, "m2: too short");
    let d = case("tiny", &|d| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("m0"))
            .unwrap();
        f.set_len(100).unwrap();
    });
    bench(&d, "too short (100 bytes)");

    let d = case("foreign_member", &|d| {
        std::fs::copy(b.join("m1"), d.join("m1")).unwrap();
    });
    bench(&d, "m1: belongs to another volume");
    let d = case("swapped", &|d| {
        std::fs::copy(d.join("m0"), d.join("m2")).unwrap();
    });
    bench(&d, "holds member 0 of this volume, not member 2");
    let d = case("foreign_journal", &|d| {
        std::fs::copy(b.join("journal"), d.join("journal")).unwrap();
    });
    bench(&d, "a foreign journal");
    let d = case("garbage", &|d| {
        std::fs::write(d.join("m0"), vec![0x55u8; 1 << 20]).unwrap();
    });
    bench(&d, "not a jraid member");

    let nowhere = tmp.path().join("nowhere");
    fails(
        &["check", "--dir", nowhere.to_str().unwrap()],
        "no such volume directory",
    );

    // Bad geometry is refused before anything is written.
    let g = tmp.path().join("geo");
    let gd = g.to_str().unwrap();
    let geo = |extra: &[&str], expect: &str| {
        let mut args = vec!["create", "--dir", gd];
        args.extend_from_slice(extra);
        fails(&args, expect);
        assert!(!g.exists(), "failed create left {g:?} behind");
    };
    let m8 = ["--member-size", "8M"];
    let with = |x: &[&'static str]| [&m8[..], x].concat();
    geo(
        &with(&["--members", "2"]),
        "bad geometry: RAID-5 needs 3 to 32 members",
    );
    geo(&with(&["--members", "33"]), "bad geometry");
    geo(
        &with(&["--members", "3", "--strip-kb", "48"]),
        "strip size must be a power of two",
    );
    geo(
        &with(&["--members", "3", "--block-size", "1024"]),
        "block size must be 512 or 4096",
    );
    geo(
        &["--members", "3", "--member-size", "1M"],
        "bad geometry: members hold",
    );
    geo(
        &with(&["--members", "3", "--journal-size", "8k"]),
        "journal size",
    );

    // Never overwrite.
    fails(
        &[
            "create",
            "--dir",
            a.to_str().unwrap(),
            "--members",
            "3",
            "--member-size",
            "8M",
        ],
        "refusing to overwrite",
    );
    ok(&["check", "--dir", a.to_str().unwrap()]);

    fails(
        &[
            "bench",
            "--dir",
            a.to_str().unwrap(),
            "--bs",
            "1000",
            "--time",
            "1",
        ],
        "not a multiple of the volume's block size",
    );
}

/// Scrub finds planted parity corruption, repairs it with --repair (the offline check agrees);
/// `fail` marks a member failed in the superblocks: status shows it, the volume serves
/// degraded, a scrub of the degraded volume is refused, a second failure too.
#[test]
fn scrub_repair_and_fail() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    let d = dir.path().to_str().expect("utf-8 path");
    create(dir.path(), "4096");
    ok(&[
        "bench",
        "--dir",
        d,
        "--rw",
        "randwrite",
        "--bytes",
        "2M",
        "--qd",
        "8",
    ]);
    // Stripe 5's strip on member 2 (1 MiB reserved area, 16 KiB strips): one block changed.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("m2"))
        .expect("open m2");
    f.write_all_at(&[0x5A; 4096], (1 << 20) + 5 * 16384)
        .expect("corrupt a block");
    drop(f);
    let o = jraid(&["scrub", "--dir", d]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("mismatching stripes: [5]"),
        "{}",
        text(&o.stdout)
    );
    let out = ok(&["scrub", "--dir", d, "--repair"]);
    assert!(out.contains("1 parity mismatches, 1 repaired"), "{out}");
    ok(&["check", "--dir", d]);
    ok(&["scrub", "--dir", d]);
    ok(&["fail", "--dir", d, "--member", "1"]);
    let st = ok(&["status", "--dir", d]);
    assert!(st.contains("m1   Failed"), "{st}");
    ok(&[
        "bench", "--dir", d, "--rw", "randrw", "--bytes", "1M", "--qd", "4",
    ]);
    fails(&["scrub", "--dir", d], "a member is out of service");
    fails(
        &["fail", "--dir", d, "--member", "2"],
        "already out of service",
    );
    fails(&["fail", "--dir", d, "--member", "7"], "no member 7");
}

/// create, bench, fail, bench degraded, replace (rebuild onto a new file), check: parity
/// matches everywhere, every member is active, the volume serves; replacing a member in
/// service, or from a degraded volume with a second member out, is refused.
#[test]
fn fail_replace_check() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spare = tempfile::tempdir().expect("temporary directory");
    let d = dir.path().to_str().expect("utf-8 path");
    create(dir.path(), "4096");
    ok(&[
        "bench",
        "--dir",
        d,
        "--rw",
        "randwrite",
        "--bytes",
        "2M",
        "--qd",
        "8",
    ]);
    ok(&["fail", "--dir", d, "--member", "2"]);
    bench_writes(d);
    let new = spare.path().join("new-m2");
    let new = new.to_str().expect("utf-8 path");
    fails(
        &["replace", "--dir", d, "--member", "0", "--with", new],
        "is in service",
    );
    let out = ok(&["replace", "--dir", d, "--member", "2", "--with", new]);
    assert!(out.contains("member 2 rebuilt"), "{out}");
    let st = ok(&["status", "--dir", d]);
    assert_eq!(st.matches("Active").count(), 3, "{st}");
    ok(&["check", "--dir", d]);
    ok(&["scrub", "--dir", d]);
    fails(&["replace", "--dir", d, "--member", "2"], "is in service");
    ok(&[
        "bench", "--dir", d, "--rw", "randrw", "--bytes", "1M", "--qd", "4",
    ]);
    ok(&["check", "--dir", d]);
}

/// The operator's scenario end to end: create, bench, fail a member, bench degraded, replace
/// it, scrub, lose the journal, set a new one (refused while the old one works), check, and
/// the volume serves again with nothing listed dirty.
#[test]
fn operator_scenario_create_bench_fail_replace_scrub_set_journal_check() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spare = tempfile::tempdir().expect("temporary directory");
    let d = dir.path().to_str().expect("utf-8 path");
    create(dir.path(), "4096");
    ok(&[
        "bench",
        "--dir",
        d,
        "--rw",
        "randwrite",
        "--bytes",
        "2M",
        "--qd",
        "8",
    ]);
    ok(&["fail", "--dir", d, "--member", "0"]);
    bench_writes(d);
    let m0 = spare.path().join("m0-new");
    ok(&[
        "replace",
        "--dir",
        d,
        "--member",
        "0",
        "--with",
        m0.to_str().unwrap(),
    ]);
    ok(&["scrub", "--dir", d]);
    let nj = spare.path().join("journal-new");
    let nj = nj.to_str().unwrap();
    fails(
        &["set-journal", "--dir", d, "--journal", nj],
        "journal is working",
    );
    std::fs::remove_file(dir.path().join("journal")).expect("lose the journal");
    fails(
        &["bench", "--dir", d, "--bytes", "1M"],
        "missing journal file",
    );
    let out = ok(&[
        "set-journal",
        "--dir",
        d,
        "--journal",
        nj,
        "--journal-size",
        "1M",
    ]);
    assert!(out.contains("is the journal of"), "{out}");
    ok(&["check", "--dir", d]);
    let st = ok(&["status", "--dir", d]);
    assert!(st.contains("dirty      none"), "{st}");
    ok(&[
        "bench", "--dir", d, "--rw", "randrw", "--bytes", "1M", "--qd", "4",
    ]);
    ok(&["check", "--dir", d]);
}
