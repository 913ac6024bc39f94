//! The role of one byte on the grid, and how each renderer shows it.
//!
//! A byte's role comes from the core ([`tessera::inspect::role_in_chunk`],
//! [`tessera::Snapshot::role_at`]); the only refinement made here is
//! [`ByteRole::Slack`]: payload bytes past what the program asked for,
//! which only a replay knows (the heap does not keep requested sizes).

use tessera::inspect::Role;

/// What a byte is, as drawn: the core's [`Role`] or slack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ByteRole {
    /// A role as the heap sees it.
    Core(Role),
    /// Usable bytes of an in-use chunk beyond the requested size.
    Slack,
    /// glibc: the `key` word of a chunk in a thread cache (tcache).
    Key,
    /// glibc: a large-bin chunk's link to the next smaller size.
    FdNextsize,
    /// glibc: a large-bin chunk's link to the next larger size.
    BkNextsize,
    /// glibc: the body of the `tcache_perthread_struct` (counts and list
    /// heads of the thread cache), a chunk at the start of the heap.
    Tcache,
}

/// Every role Tessera's own heaps show, in legend order (the order of
/// [`Role::ALL`], with slack after payload).
pub const LEGEND: [ByteRole; 19] = [
    ByteRole::Core(Role::SegmentRecord),
    ByteRole::Core(Role::HeapState),
    ByteRole::Core(Role::MmapHeader),
    ByteRole::Core(Role::PrevFoot),
    ByteRole::Core(Role::Head),
    ByteRole::Core(Role::Payload),
    ByteRole::Slack,
    ByteRole::Core(Role::Fd),
    ByteRole::Core(Role::Bk),
    ByteRole::Core(Role::Child0),
    ByteRole::Core(Role::Child1),
    ByteRole::Core(Role::Parent),
    ByteRole::Core(Role::Index),
    ByteRole::Core(Role::Free),
    ByteRole::Core(Role::Purged),
    ByteRole::Core(Role::Dv),
    ByteRole::Core(Role::Top),
    ByteRole::Core(Role::Fencepost),
    ByteRole::Core(Role::Outside),
];

/// Roles only other allocators' heaps show (the comparison with glibc).
pub const FOREIGN: [ByteRole; 4] = [
    ByteRole::Key,
    ByteRole::FdNextsize,
    ByteRole::BkNextsize,
    ByteRole::Tcache,
];

/// [`LEGEND`] then [`FOREIGN`]: every role; [`ByteRole::index`] is the
/// position here.
pub fn all() -> impl Iterator<Item = ByteRole> {
    LEGEND.iter().chain(FOREIGN.iter()).copied()
}

impl ByteRole {
    /// The name shown in legends and tooltips (dlmalloc's field names).
    pub fn name(self) -> &'static str {
        match self {
            ByteRole::Core(r) => r.name(),
            ByteRole::Slack => "slack",
            ByteRole::Key => "key",
            ByteRole::FdNextsize => "fd_nextsize",
            ByteRole::BkNextsize => "bk_nextsize",
            ByteRole::Tcache => "tcache struct",
        }
    }

    /// The one-character glyph of the text grids. Distinct for every role;
    /// free-ish roles are light, in-use payload is dense.
    pub fn glyph(self) -> char {
        match self {
            ByteRole::Slack => '~',
            ByteRole::Key => 'k',
            ByteRole::FdNextsize => '<',
            ByteRole::BkNextsize => '>',
            ByteRole::Tcache => 'T',
            ByteRole::Core(r) => match r {
                Role::SegmentRecord => 'S',
                Role::HeapState => 'M',
                Role::MmapHeader => 'H',
                Role::PrevFoot => 'p',
                Role::Head => 'h',
                Role::Payload => '#',
                Role::Fd => 'f',
                Role::Bk => 'b',
                Role::Child0 => '0',
                Role::Child1 => '1',
                Role::Parent => '^',
                Role::Index => 'i',
                Role::Free => '.',
                Role::Purged => ',',
                Role::Dv => ':',
                Role::Top => '_',
                Role::Fencepost => 'F',
                Role::Outside => ' ',
            },
        }
    }

    /// A short explanation for legends.
    pub fn meaning(self) -> &'static str {
        match self {
            ByteRole::Slack => "usable bytes past the request",
            ByteRole::Key => "tcache: marks the chunk as cached (catches double frees)",
            ByteRole::FdNextsize => "large bin: next smaller size's first chunk",
            ByteRole::BkNextsize => "large bin: next larger size's first chunk",
            ByteRole::Tcache => "tcache_perthread_struct: counts and list heads",
            ByteRole::Core(r) => match r {
                Role::SegmentRecord => "segment record (at the segment's base)",
                Role::HeapState => "heap state: bins, maps, dv, top",
                Role::MmapHeader => "header of a direct (mmapped) chunk's mapping",
                Role::PrevFoot => "previous chunk's size if it is free, else its payload",
                Role::Head => "size | CINUSE | PINUSE",
                Role::Payload => "the program's bytes",
                Role::Fd => "next free chunk in the bin",
                Role::Bk => "previous free chunk in the bin",
                Role::Child0 => "tree: left subtree (next key bit 0)",
                Role::Child1 => "tree: right subtree (next key bit 1)",
                Role::Parent => "tree: parent node (or the bin's root slot)",
                Role::Index => "tree: the chunk's tree bin",
                Role::Free => "unused bytes of a free chunk",
                Role::Purged => "a purged free chunk's pages: returned to the OS",
                Role::Dv => "the designated victim's bytes",
                Role::Top => "top: the free space at the segment's end",
                Role::Fencepost => "ends a segment or a mapping",
                Role::Outside => "no chunk (not committed, or a gap)",
            },
        }
    }

    /// Is this byte part of a free chunk (bins, dv, top)?
    pub fn is_free(self) -> bool {
        matches!(
            self,
            ByteRole::Key | ByteRole::FdNextsize | ByteRole::BkNextsize
        ) || matches!(
            self,
            ByteRole::Core(
                Role::Fd
                    | Role::Bk
                    | Role::Child0
                    | Role::Child1
                    | Role::Parent
                    | Role::Index
                    | Role::Free
                    | Role::Purged
                    | Role::Dv
                    | Role::Top
            )
        )
    }

    /// Stable index (position in [`all`]), used by the HTML pages.
    pub fn index(self) -> usize {
        all()
            .position(|r| r == self)
            .expect("every role is in the legend")
    }

    /// Does only another allocator's heap show this role?
    pub fn is_foreign(self) -> bool {
        FOREIGN.contains(&self)
    }

    /// CSS class suffix for the HTML page.
    pub fn css(self) -> &'static str {
        match self {
            ByteRole::Slack => "slack",
            ByteRole::Key => "key",
            ByteRole::FdNextsize => "fdns",
            ByteRole::BkNextsize => "bkns",
            ByteRole::Tcache => "tcache",
            ByteRole::Core(r) => match r {
                Role::SegmentRecord => "seg",
                Role::HeapState => "state",
                Role::MmapHeader => "mmaphdr",
                Role::PrevFoot => "prevfoot",
                Role::Head => "head",
                Role::Payload => "payload",
                Role::Fd => "fd",
                Role::Bk => "bk",
                Role::Child0 => "child0",
                Role::Child1 => "child1",
                Role::Parent => "parent",
                Role::Index => "index",
                Role::Free => "free",
                Role::Purged => "purged",
                Role::Dv => "dv",
                Role::Top => "top",
                Role::Fencepost => "fence",
                Role::Outside => "outside",
            },
        }
    }

    /// Foreground and background of the ANSI renderer (xterm-256 codes).
    /// In-use bytes are warm, free bytes cool, headers grey.
    pub fn ansi(self) -> (u8, u8) {
        match self {
            ByteRole::Slack => (94, 223),
            ByteRole::Key => (22, 186),
            ByteRole::FdNextsize => (17, 117),
            ByteRole::BkNextsize => (17, 147),
            ByteRole::Tcache => (231, 96),
            ByteRole::Core(r) => match r {
                Role::SegmentRecord => (231, 90),
                Role::HeapState => (225, 54),
                Role::MmapHeader => (231, 127),
                Role::PrevFoot => (250, 238),
                Role::Head => (231, 244),
                Role::Payload => (52, 215),
                Role::Fd => (17, 75),
                Role::Bk => (17, 111),
                Role::Child0 => (22, 114),
                Role::Child1 => (22, 150),
                Role::Parent => (22, 78),
                Role::Index => (22, 193),
                Role::Free => (24, 153),
                Role::Purged => (250, 236),
                Role::Dv => (23, 116),
                Role::Top => (65, 194),
                Role::Fencepost => (231, 160),
                Role::Outside => (240, 0),
            },
        }
    }
}

impl From<Role> for ByteRole {
    fn from(r: Role) -> Self {
        ByteRole::Core(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_core_role_is_in_the_legend_once() {
        for r in Role::ALL {
            assert_eq!(
                LEGEND.iter().filter(|&&l| l == ByteRole::Core(r)).count(),
                1,
                "{r:?}"
            );
        }
        assert_eq!(LEGEND.len(), Role::ALL.len() + 1);
    }

    #[test]
    fn glyphs_css_and_colours_are_distinct() {
        let n = LEGEND.len() + FOREIGN.len();
        let glyphs: HashSet<char> = all().map(|r| r.glyph()).collect();
        assert_eq!(glyphs.len(), n);
        let css: HashSet<&str> = all().map(|r| r.css()).collect();
        assert_eq!(css.len(), n);
        let bg: HashSet<u8> = all().map(|r| r.ansi().1).collect();
        assert_eq!(bg.len(), n);
        for (i, r) in all().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(r.is_foreign(), i >= LEGEND.len());
        }
    }
}
