//! glibc's malloc (ptmalloc2), replayed in a child process and walked
//! from memory: the main arena's heap chunk by chunk from its first byte,
//! with the layout glibc 2.26 and later keep in memory. No debug symbols.
//!
//! # The child
//! `tessera` runs itself as a child (`tessera glibc-replay`, hidden) with
//! the trace on stdin. The child's own Rust allocations go to Tessera (the
//! `tessera` binary's global allocator), so glibc's main arena holds only
//! what the trace asks for, plus the `tcache_perthread_struct` glibc
//! allocates at the first malloc. After every call it walks the heap and
//! writes what it found to stdout ([`PROTOCOL`]); the parent reads it back
//! into pictures ([`run_child`]).
//!
//! # What is read, and how
//! - **the version**: `gnu_get_libc_version()`; layouts are known for
//!   2.26 to 2.41, anything else is refused with a message.
//! - **main_arena** (not exported): a forked probe frees a 1.25 KiB chunk
//!   (too big for the tcache) into the unsorted bin; its `fd` then points
//!   at the unsorted bin's head inside main_arena, whose offset in
//!   `struct malloc_state` is known. The fork shares the address of libc's
//!   data, and the probe's heap is its own copy.
//! - **the heap** starts at the program break the child saw before its
//!   first malloc (16-aligned); it ends where top ends. Each chunk's size
//!   is its head word without the three flag bits (PREV_INUSE 1,
//!   IS_MMAPPED 2, NON_MAIN_ARENA 4).
//! - **tcache**: the first chunk is the `tcache_perthread_struct`: 64
//!   counts (bytes before 2.30, 16-bit words since), then 64 list heads
//!   (user pointers). Each entry's `next` (at the user pointer) is stored
//!   mangled since 2.32 (safe-linking): `next = stored ^ (&next >> 12)`;
//!   its `key` (2.29+) follows it.
//! - **fastbins**: `main_arena.fastbinsY[0..10]`, linked through `fd`,
//!   mangled the same way since 2.32.
//! - **bins**: `main_arena.bins`: bin 1 unsorted, 2..63 small, 64..126
//!   large, each a ring through a head inside main_arena; large chunks
//!   also carry `fd_nextsize`/`bk_nextsize`.
//! - **top**: `main_arena.top`. Every other chunk is in use.
//! - **mmapped chunks**: the trace's live blocks whose head has IS_MMAPPED.

use crate::core::{Applied, Trace, PAGE};
use crate::model::{pages_to_track, Chunk, Kind, Link, PageTracker, Picture, Who};
use crate::replay::{Replay, Subject};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::rc::Rc;

/// The first line of the child's output.
pub const PROTOCOL: &str = "tessera-glibc 1";

/// Where glibc keeps things, by version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// (major, minor).
    pub version: (u32, u32),
    /// Offset of `fastbinsY` in `struct malloc_state` (8 in 2.26; 16 once
    /// `have_fastchunks` was added in 2.27).
    pub fastbins: usize,
    /// Bytes of each tcache count (1 before 2.30, 2 since).
    pub count_bytes: usize,
    /// Has the tcache entry a `key` word (2.29+)?
    pub key: bool,
    /// Are single links mangled (safe-linking, 2.32+)?
    pub safe_linking: bool,
}

impl Layout {
    /// The layout of glibc `major.minor`, if known.
    pub fn of(major: u32, minor: u32) -> Option<Layout> {
        if major != 2 || !(26..=41).contains(&minor) {
            return None;
        }
        Some(Layout {
            version: (major, minor),
            fastbins: if minor >= 27 { 16 } else { 8 },
            count_bytes: if minor >= 30 { 2 } else { 1 },
            key: minor >= 29,
            safe_linking: minor >= 32,
        })
    }

    /// Offset of `top` in `struct malloc_state` (after 10 fastbins).
    pub fn top(&self) -> usize {
        self.fastbins + 10 * 8
    }

    /// Offset of `bins`.
    pub fn bins(&self) -> usize {
        self.top() + 16
    }

    /// Size of the `tcache_perthread_struct` chunk.
    pub fn tcache_chunk(&self) -> usize {
        (64 * self.count_bytes + 64 * 8 + 8 + 15) & !15
    }

    /// A link read from memory, demangled: `stored ^ (slot >> 12)`.
    pub fn demangle(&self, slot: usize, stored: usize) -> usize {
        if self.safe_linking {
            stored ^ (slot >> 12)
        } else {
            stored
        }
    }
}

/// The running glibc's version, from `gnu_get_libc_version`.
pub fn running_version() -> Result<(u32, u32), String> {
    // SAFETY: returns a static NUL-terminated string.
    let s = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let s = s.to_string_lossy();
    let mut it = s.split('.').map(|x| x.parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => Err(format!("cannot read the glibc version `{s}`")),
    }
}

/// The layout of the running glibc, or why it is refused.
pub fn running_layout() -> Result<Layout, String> {
    let (a, b) = running_version()?;
    Layout::of(a, b).ok_or_else(|| {
        format!("glibc {a}.{b}: its malloc's memory layout is not one this walker knows (2.26 to 2.41); refusing to guess")
    })
}

/// Finds main_arena's address with a forked probe (module docs).
fn find_main_arena(layout: &Layout) -> Result<usize, String> {
    let mut fds = [0i32; 2];
    // SAFETY: a fresh pipe.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err("pipe failed".into());
    }
    // SAFETY: this process has one thread; the child only calls
    // async-signal-safe functions and malloc/free (its own copy of the
    // heap), then _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the probe: its own heap; nothing is returned.
        unsafe {
            // black_box: the compiler knows malloc and free, and would drop
            // a pair whose block it cannot see used (and the guard).
            let a = std::hint::black_box(libc::malloc(0x500) as usize);
            let guard = std::hint::black_box(libc::malloc(0x10) as usize);
            libc::free(a as *mut libc::c_void);
            let fd = word(std::hint::black_box(a));
            std::hint::black_box(guard);
            libc::write(fds[1], (&fd as *const usize).cast(), 8);
            libc::_exit(0);
        }
    }
    // SAFETY: our end of the pipe.
    unsafe { libc::close(fds[1]) };
    let mut fd = 0usize;
    // SAFETY: reading 8 bytes into a usize.
    let n = unsafe { libc::read(fds[0], (&mut fd as *mut usize).cast(), 8) };
    // SAFETY: closing our fd and reaping the probe.
    unsafe {
        libc::close(fds[0]);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    if n != 8 || fd == 0 {
        return Err(format!(
            "the probe for main_arena failed (read {n} bytes: {fd:#x})"
        ));
    }
    // fd = the unsorted bin's head chunk = &bins[0] - 16.
    Ok(fd + 16 - layout.bins())
}

/// The heap's start: [heap] in /proc/self/maps, or the program break.
fn heap_start() -> usize {
    if let Ok(maps) = std::fs::read_to_string("/proc/self/maps") {
        for l in maps.lines() {
            if l.ends_with("[heap]") {
                if let Some(a) = l
                    .split('-')
                    .next()
                    .and_then(|a| usize::from_str_radix(a, 16).ok())
                {
                    return a;
                }
            }
        }
    }
    // SAFETY: sbrk(0) only reads the break.
    (unsafe { libc::sbrk(0) }) as usize
}

/// glibc's malloc in this process (the child's side).
struct Libc {
    layout: Layout,
    arena: usize,
    start: usize,
    live: BTreeMap<usize, usize>,
    tracker: PageTracker,
}

fn word(a: usize) -> usize {
    // SAFETY: callers pass addresses inside the heap (checked against the
    // break) or inside main_arena; this process is between libc calls.
    // Volatile, because the compiler knows free() and must not assume that
    // a freed block holds nothing worth reading.
    unsafe { std::ptr::read_volatile(a as *const usize) }
}

impl Libc {
    fn brk() -> usize {
        // SAFETY: sbrk(0) only reads the break.
        (unsafe { libc::sbrk(0) }) as usize
    }

    fn in_heap(&self, a: usize) -> bool {
        a >= self.start && a + 8 <= Self::brk()
    }

    fn walk(&self) -> (Vec<Chunk>, Vec<String>) {
        let l = &self.layout;
        let mut notes = Vec::new();
        let top = word(self.arena + l.top());
        let mut chunks: Vec<Chunk> = Vec::new();
        if top == 0 || !self.in_heap(top) {
            notes.push("no heap yet: glibc sets up the main arena's heap, and the tcache_perthread_struct in it, at the first malloc".into());
        } else {
            let mut p = (self.start + 15) & !15;
            while p <= top {
                let head = word(p + 8);
                let size = head & !7;
                let last = p == top;
                if !last && (size < 32 || p + size > top) {
                    notes.push(format!(
                        "the walk stopped at {p:#x}: head {head:#x} is no chunk"
                    ));
                    break;
                }
                chunks.push(Chunk {
                    addr: p,
                    size,
                    head,
                    kind: if last { Kind::Top } else { Kind::InUse },
                    links: Vec::new(),
                });
                if last {
                    break;
                }
                p += size;
            }
        }
        let index: BTreeMap<usize, usize> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (c.addr, i))
            .collect();
        let mark = |chunks: &mut Vec<Chunk>, addr: usize, kind: Kind, links: Vec<Link>| -> bool {
            match index.get(&addr) {
                Some(&i) if chunks[i].kind == Kind::InUse => {
                    chunks[i].kind = kind;
                    chunks[i].links = links;
                    true
                }
                _ => false,
            }
        };
        // The tcache struct and its lists.
        if let Some(first) = chunks.first().map(|c| (c.addr, c.size)) {
            if first.1 == l.tcache_chunk() {
                mark(&mut chunks, first.0, Kind::TcacheStruct, Vec::new());
                let counts = first.0 + 16;
                let heads = counts + 64 * l.count_bytes;
                for i in 0..64 {
                    let n = if l.count_bytes == 1 {
                        // SAFETY: a byte of the tcache struct, in the heap.
                        unsafe { std::ptr::read_volatile((counts + i) as *const u8) as usize }
                    } else {
                        // SAFETY: a 16-bit count of the tcache struct.
                        unsafe { std::ptr::read_volatile((counts + 2 * i) as *const u16) as usize }
                    };
                    let mut mem = word(heads + 8 * i);
                    for _ in 0..n {
                        if mem < 16 || !self.in_heap(mem) {
                            break;
                        }
                        let stored = word(mem);
                        let next = l.demangle(mem, stored);
                        let mut links = vec![Link {
                            name: "next",
                            offset: 16,
                            len: 8,
                            value: next,
                        }];
                        if l.key {
                            links.push(Link {
                                name: "key",
                                offset: 24,
                                len: 8,
                                value: word(mem + 8),
                            });
                        }
                        if !mark(&mut chunks, mem - 16, Kind::Tcache(i as u8), links) {
                            notes.push(format!("tcache bin {i}: {mem:#x} is no chunk of the heap"));
                            break;
                        }
                        mem = next;
                    }
                }
            }
        }
        // Fastbins.
        for i in 0..10 {
            let mut p = word(self.arena + l.fastbins + 8 * i);
            let mut guard = 0;
            while p != 0 && self.in_heap(p) && guard <= chunks.len() {
                let next = l.demangle(p + 16, word(p + 16));
                if !mark(
                    &mut chunks,
                    p,
                    Kind::Fastbin(i as u8),
                    vec![Link {
                        name: "fd",
                        offset: 16,
                        len: 8,
                        value: next,
                    }],
                ) {
                    break;
                }
                p = next;
                guard += 1;
            }
        }
        // Unsorted, small and large bins.
        for i in 1..127usize {
            let head = self.arena + l.bins() + (i - 1) * 16 - 16;
            let mut p = word(head + 16);
            let mut guard = 0;
            while p != head && self.in_heap(p) && guard <= chunks.len() {
                let kind = match i {
                    1 => Kind::Unsorted,
                    2..=63 => Kind::GlibcSmall(i as u8),
                    _ => Kind::GlibcLarge(i as u8),
                };
                let mut links = vec![
                    Link {
                        name: "fd",
                        offset: 16,
                        len: 8,
                        value: word(p + 16),
                    },
                    Link {
                        name: "bk",
                        offset: 24,
                        len: 8,
                        value: word(p + 24),
                    },
                ];
                if i >= 64 {
                    links.push(Link {
                        name: "fd_nextsize",
                        offset: 32,
                        len: 8,
                        value: word(p + 32),
                    });
                    links.push(Link {
                        name: "bk_nextsize",
                        offset: 40,
                        len: 8,
                        value: word(p + 40),
                    });
                }
                if !mark(&mut chunks, p, kind, links) {
                    break;
                }
                p = word(p + 16);
                guard += 1;
            }
        }
        // Mmapped blocks of the trace.
        for &mem in self.live.keys() {
            let head = word(mem - 8);
            if head & 2 != 0 {
                chunks.push(Chunk {
                    addr: mem - 16,
                    size: head & !7,
                    head,
                    kind: Kind::Mmapped,
                    links: Vec::new(),
                });
            }
        }
        chunks.sort_by_key(|c| c.addr);
        (chunks, notes)
    }

    fn base(&self, chunks: &[Chunk]) -> usize {
        match chunks.first() {
            Some(c) if c.kind == Kind::TcacheStruct => c.end(),
            Some(c) => c.addr,
            None => (self.start + 15) & !15,
        }
    }
}

impl Subject for Libc {
    fn malloc(&mut self, size: usize) -> usize {
        // SAFETY: plain malloc.
        let p = unsafe { libc::malloc(size) } as usize;
        self.live.insert(p, size);
        p
    }
    fn calloc(&mut self, n: usize, size: usize) -> usize {
        // SAFETY: plain calloc.
        let p = unsafe { libc::calloc(n, size) } as usize;
        self.live.insert(p, n.saturating_mul(size));
        p
    }
    fn realloc(&mut self, p: usize, size: usize) -> usize {
        // SAFETY: the replay passes live pointers of this malloc only.
        let q = unsafe { libc::realloc(p as *mut libc::c_void, size) } as usize;
        if q != 0 {
            self.live.remove(&p);
            self.live.insert(q, size);
        }
        q
    }
    fn memalign(&mut self, align: usize, size: usize) -> usize {
        // SAFETY: plain memalign (glibc rounds the alignment up).
        let p = unsafe { libc::memalign(align, size) } as usize;
        self.live.insert(p, size);
        p
    }
    fn free(&mut self, p: usize) {
        self.live.remove(&p);
        // SAFETY: the replay passes live pointers of this malloc only.
        unsafe { libc::free(p as *mut libc::c_void) }
    }
    fn picture(&mut self) -> Picture {
        let (chunks, notes) = self.walk();
        let mut pages: BTreeSet<usize> = pages_to_track(
            &chunks
                .iter()
                .filter(|c| c.kind != Kind::Mmapped)
                .cloned()
                .collect::<Vec<_>>(),
        );
        pages.extend(
            chunks
                .iter()
                .filter(|c| c.kind == Kind::Mmapped)
                .map(|c| c.addr & !(PAGE - 1)),
        );
        let live_pages: BTreeSet<usize> = pages.clone();
        let (lo, hi) = (self.start & !(PAGE - 1), Self::brk());
        let mmapped: Vec<(usize, usize)> = chunks
            .iter()
            .filter(|c| c.kind == Kind::Mmapped)
            .map(|c| (c.addr & !(PAGE - 1), c.end()))
            .collect();
        let (pages, changed) = self.tracker.update(&live_pages, &mut |p| {
            let ok = (p >= lo && p + PAGE <= hi)
                || mmapped.iter().any(|&(a, b)| p >= a && p + PAGE <= b);
            // SAFETY: a page of the heap below the break, or of a live
            // mmapped chunk's mapping.
            ok.then(|| unsafe { std::ptr::read_volatile(p as *const [u8; PAGE]) })
        });
        Picture {
            who: Who::Glibc,
            base: self.base(&chunks),
            chunks,
            state: (
                self.arena,
                self.arena + self.layout.bins() + 254 * 8 + 16,
                "main_arena",
            ),
            areas: Vec::new(),
            notes,
            pages,
            changed,
        }
    }
}

fn kind_code(k: Kind) -> String {
    match k {
        Kind::InUse => "inuse".into(),
        Kind::Top => "top".into(),
        Kind::TcacheStruct => "tcachestruct".into(),
        Kind::Tcache(i) => format!("tcache:{i}"),
        Kind::Fastbin(i) => format!("fast:{i}"),
        Kind::Unsorted => "unsorted".into(),
        Kind::GlibcSmall(i) => format!("small:{i}"),
        Kind::GlibcLarge(i) => format!("large:{i}"),
        Kind::Mmapped => "mmapped".into(),
        other => format!("{other:?}"),
    }
}

fn parse_kind(s: &str) -> Option<Kind> {
    let num = |p: &str| s.strip_prefix(p).and_then(|x| x.parse::<u8>().ok());
    Some(match s {
        "inuse" => Kind::InUse,
        "top" => Kind::Top,
        "tcachestruct" => Kind::TcacheStruct,
        "unsorted" => Kind::Unsorted,
        "mmapped" => Kind::Mmapped,
        _ => {
            if let Some(i) = num("tcache:") {
                Kind::Tcache(i)
            } else if let Some(i) = num("fast:") {
                Kind::Fastbin(i)
            } else if let Some(i) = num("small:") {
                Kind::GlibcSmall(i)
            } else if let Some(i) = num("large:") {
                Kind::GlibcLarge(i)
            } else {
                return None;
            }
        }
    })
}

const LINK_NAMES: [&str; 6] = ["next", "key", "fd", "bk", "fd_nextsize", "bk_nextsize"];

/// The child's side: replays the trace read from `input` with libc and
/// writes a picture after every step to `out`. Call it before anything
/// in the process has used libc's malloc.
pub fn child(input: &mut dyn Read, out: &mut dyn Write) -> Result<(), String> {
    let start = heap_start();
    let layout = running_layout()?;
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the trace: {e}"))?;
    let trace = Trace::parse(&text).map_err(|e| format!("line {}: {}", e.line, e.msg))?;
    let arena = find_main_arena(&layout)?;
    let mut r = Replay::new(Libc {
        layout,
        arena,
        start,
        live: BTreeMap::new(),
        tracker: PageTracker::default(),
    });
    let w = |out: &mut dyn Write, s: &str| {
        out.write_all(s.as_bytes())
            .map_err(|e| format!("cannot write: {e}"))
    };
    w(
        out,
        &format!(
            "{PROTOCOL} version={}.{} main_arena={arena:#x} heap={start:#x}\n",
            layout.version.0, layout.version.1
        ),
    )?;
    let emit = |out: &mut dyn Write,
                r: &mut Replay<Libc>,
                k: usize,
                a: Option<Applied>|
     -> Result<(), String> {
        let pic = r.subject.picture();
        let mut s = format!("step {k}\n");
        if let Some(a) = a {
            let _ = writeln!(s, "applied {:#x} {:#x} {}", a.old, a.new, a.size);
        }
        let _ = writeln!(s, "base {:#x}", pic.base);
        for c in &pic.chunks {
            let _ = write!(
                s,
                "chunk {:#x} {} {:#x} {}",
                c.addr,
                c.size,
                c.head,
                kind_code(c.kind)
            );
            for l in &c.links {
                let _ = write!(s, " {}={:#x}", l.name, l.value);
            }
            s.push('\n');
        }
        for (rec, addr) in r.blocks() {
            let _ = writeln!(
                s,
                "block {rec:#x} {addr:#x} {}",
                r.requests().get(&addr).copied().unwrap_or(0)
            );
        }
        for n in &pic.notes {
            let _ = writeln!(s, "note {n}");
        }
        for p in &pic.changed {
            let _ = write!(s, "page {p:#x} ");
            for b in pic.pages[p].iter() {
                let _ = write!(s, "{b:02x}");
            }
            s.push('\n');
        }
        s.push_str("end\n");
        w(out, &s)
    };
    emit(out, &mut r, 0, None)?;
    for (k, rec) in trace.records.iter().enumerate() {
        let line = trace.lines[k];
        let a = r
            .apply(rec)
            .map_err(|e| format!("trace line {line}: {e}"))?;
        emit(out, &mut r, k + 1, Some(a))?;
    }
    Ok(())
}

/// One step of glibc's replay as the parent reads it.
#[derive(Clone, Debug)]
pub struct Step {
    /// What the call did (None at step 0).
    pub applied: Option<Applied>,
    /// The heap after it.
    pub picture: Picture,
    /// Live blocks: recorded address -> (address, requested size).
    pub blocks: BTreeMap<usize, (usize, usize)>,
}

/// The parent's side: runs `exe` (the `tessera` binary) as `exe
/// glibc-replay` with `trace` on stdin, and reads its pictures.
pub fn run_child(exe: &std::path::Path, trace: &Trace) -> Result<(String, Vec<Step>), String> {
    let mut child = std::process::Command::new(exe)
        .arg("glibc-replay")
        .env_remove("LD_PRELOAD")
        .env_remove("GLIBC_TUNABLES")
        .env_remove("MALLOC_ARENA_MAX")
        .env_remove("MALLOC_TOP_PAD_")
        .env_remove("MALLOC_MMAP_THRESHOLD_")
        .env_remove("MALLOC_TRIM_THRESHOLD_")
        .env_remove("MALLOC_PERTURB_")
        .env_remove("MALLOC_CHECK_")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {} glibc-replay: {e}", exe.display()))?;
    let text = trace.to_text();
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("glibc child: {e}"))?;
    let _ = writer.join();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("the glibc replay failed: {}", err.trim()));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// Parses the child's output into its header line and steps.
pub fn parse(text: &str) -> Result<(String, Vec<Step>), String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    if !header.starts_with(PROTOCOL) {
        return Err(format!("the glibc child wrote `{header}`"));
    }
    let field = |k: &str| {
        header
            .split(' ')
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| usize::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0)
    };
    let arena = field("main_arena=");
    let layout = header
        .split(' ')
        .find_map(|w| w.strip_prefix("version="))
        .and_then(|v| {
            let (a, b) = v.split_once('.')?;
            Layout::of(a.parse().ok()?, b.parse().ok()?)
        })
        .ok_or("the glibc child named no known version")?;
    let hex = |s: &str| {
        usize::from_str_radix(s.trim_start_matches("0x"), 16)
            .map_err(|_| format!("`{s}` is not hex"))
    };
    let mut steps = Vec::new();
    let mut pages: BTreeMap<usize, Rc<[u8; PAGE]>> = BTreeMap::new();
    let mut cur: Option<Step> = None;
    for line in lines {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let w: Vec<&str> = rest.split(' ').collect();
        match tag {
            "step" => {
                cur = Some(Step {
                    applied: None,
                    picture: Picture {
                        who: Who::Glibc,
                        chunks: Vec::new(),
                        base: 0,
                        state: (arena, arena + layout.bins() + 254 * 8 + 16, "main_arena"),
                        areas: Vec::new(),
                        notes: Vec::new(),
                        pages: BTreeMap::new(),
                        changed: BTreeSet::new(),
                    },
                    blocks: BTreeMap::new(),
                })
            }
            "end" => {
                let mut s = cur.take().ok_or("`end` without `step`")?;
                // Pages no chunk touches any more are dropped.
                let keep = pages_to_track(&s.picture.chunks);
                pages.retain(|p, _| keep.contains(p) || s.picture.changed.contains(p));
                s.picture.pages = pages.clone();
                steps.push(s);
            }
            _ => {
                let s = cur.as_mut().ok_or("a record outside a step")?;
                match tag {
                    "applied" if w.len() == 3 => {
                        s.applied = Some(Applied {
                            old: hex(w[0])?,
                            new: hex(w[1])?,
                            size: w[2].parse().map_err(|_| "bad size")?,
                        })
                    }
                    "base" => s.picture.base = hex(rest)?,
                    "chunk" if w.len() >= 4 => {
                        let mut links = Vec::new();
                        for kv in &w[4..] {
                            let (k, v) = kv.split_once('=').ok_or("bad link")?;
                            let name = LINK_NAMES
                                .iter()
                                .copied()
                                .find(|n| *n == k)
                                .ok_or("unknown link")?;
                            let offset = match name {
                                "next" | "fd" => 16,
                                "key" | "bk" => 24,
                                "fd_nextsize" => 32,
                                _ => 40,
                            };
                            links.push(Link {
                                name,
                                offset,
                                len: 8,
                                value: hex(v)?,
                            });
                        }
                        s.picture.chunks.push(Chunk {
                            addr: hex(w[0])?,
                            size: w[1].parse().map_err(|_| "bad size")?,
                            head: hex(w[2])?,
                            kind: parse_kind(w[3]).ok_or("unknown chunk kind")?,
                            links,
                        });
                    }
                    "block" if w.len() == 3 => {
                        s.blocks.insert(
                            hex(w[0])?,
                            (hex(w[1])?, w[2].parse().map_err(|_| "bad size")?),
                        );
                    }
                    "note" => s.picture.notes.push(rest.to_owned()),
                    "page" if w.len() == 2 && w[1].len() == 2 * PAGE => {
                        let mut b = [0u8; PAGE];
                        for (i, x) in b.iter_mut().enumerate() {
                            *x = u8::from_str_radix(&w[1][2 * i..2 * i + 2], 16)
                                .map_err(|_| "bad page")?;
                        }
                        let p = hex(w[0])?;
                        pages.insert(p, Rc::new(b));
                        s.picture.changed.insert(p);
                    }
                    _ => {
                        return Err(format!(
                            "unexpected line from the glibc child: `{}`",
                            line.chars().take(60).collect::<String>()
                        ))
                    }
                }
            }
        }
    }
    Ok((header.to_owned(), steps))
}
