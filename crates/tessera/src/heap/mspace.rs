//! [`Heap`]: the public handle of one heap (dlmalloc's mspace), with its
//! constructors, the public API and its drop, which returns every byte.

use super::check::CheckError;
use super::chunk::{align_up, Chunk, Head, MALLOC_ALIGNMENT, MEM_OFFSET, MIN_CHUNK_SIZE};
use super::segment::{
    init_record, Segment, MAX_SEGMENT_CHUNK, SEGMENT_HEADER, SEGMENT_SIZE, SEG_HOLDS_STATE,
    TOP_FOOT_SIZE,
};
use super::smallbins::SmallBins;
use super::state::{Config, DebugConfig, State};
use super::stats::Stats;
use super::treebins::TreeBins;
use crate::sys::lock::RawLock;
use crate::sys::os::{Faulty, Mmap, PageSource};
use crate::sys::registry;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize};

/// Where the first chunk of a heap's first segment starts: at a fixed
/// offset, whatever the state's exact size, so that the layout a learner
/// sees (and the golden grids) does not move when a field is added. The
/// record and the state must fit before it (checked below for the page
/// sources Tessera ships; a larger source moves the first chunk up).
pub const FIRST_CHUNK_OFFSET: usize = 1024;

/// Offset of the state inside the first segment, and of the first chunk.
const fn state_offsets<S: PageSource>() -> (usize, usize) {
    let align = core::mem::align_of::<State<S>>();
    let state_off = align_up(SEGMENT_HEADER, align);
    let end = align_up(
        state_off + core::mem::size_of::<State<S>>(),
        MALLOC_ALIGNMENT,
    );
    let first = if end > FIRST_CHUNK_OFFSET {
        end
    } else {
        FIRST_CHUNK_OFFSET
    };
    (state_off, first)
}

const _: () = assert!(state_offsets::<Mmap>().1 == FIRST_CHUNK_OFFSET);
const _: () = assert!(state_offsets::<Faulty<Mmap>>().1 == FIRST_CHUNK_OFFSET);

/// One heap: dlmalloc's mspace. Single-threaded (`Send`, not `Sync`);
/// wrap it in a lock to share it. Dropping it returns all its memory.
///
/// ```
/// let mut heap = tessera::Heap::new();
/// let p = heap.malloc(100);
/// assert!(!p.is_null());
/// assert!(unsafe { heap.usable_size(p) } >= 100);
/// unsafe { heap.free(p) };
/// heap.check().unwrap();
/// ```
pub struct Heap<S: PageSource = Mmap> {
    state: NonNull<State<S>>,
}

// SAFETY: a Heap owns its memory exclusively; moving it to another thread
// moves that ownership. The page source must be Send for the same reason.
unsafe impl<S: PageSource + Send> Send for Heap<S> {}

impl Heap<Mmap> {
    /// A new heap on `mmap`. Panics if the OS refuses the first segment;
    /// see [`Heap::try_new`].
    pub fn new() -> Self {
        Self::try_new().expect("tessera: could not map the first segment of a heap")
    }

    /// A new heap on `mmap`, or `None` if the OS refuses the first segment.
    pub fn try_new() -> Option<Self> {
        Self::with_source(Mmap)
    }
}

impl Default for Heap<Mmap> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: PageSource> Heap<S> {
    /// A new heap drawing pages from `source`, with default tunables.
    pub fn with_source(source: S) -> Option<Self> {
        Self::with_config(source, Config::DEFAULT)
    }

    /// A new heap drawing pages from `source` with the given tunables. Maps
    /// the first segment, which holds the state; `None` if that fails.
    pub fn with_config(source: S, config: Config) -> Option<Self> {
        let config = Config {
            mmap_threshold: config.mmap_threshold.min(MAX_SEGMENT_CHUNK),
            ..config
        };
        let (state_off, first) = state_offsets::<S>();
        let page = source.page_size();
        let grain = align_up(config.granularity.max(1), page);
        let commit = align_up(
            first + MIN_CHUNK_SIZE + TOP_FOOT_SIZE + config.top_pad,
            grain,
        )
        .min(SEGMENT_SIZE);
        let base = source.reserve(SEGMENT_SIZE, SEGMENT_SIZE);
        if base.is_null() {
            return None;
        }
        // SAFETY: `base` is a fresh reservation; the state, first chunk and
        // fencepost all lie in the committed prefix.
        unsafe {
            if !source.commit(base, commit)
                || !registry::add_segment(base as usize, registry::PLAIN)
            {
                source.unmap(base, SEGMENT_SIZE);
                return None;
            }
            let state: *mut State<S> = base.add(state_off).cast();
            let seg = init_record(base, state.cast(), commit, first, SEG_HOLDS_STATE);
            let top = Segment::first_chunk(seg);
            let topsize = commit - first - TOP_FOOT_SIZE;
            state.write(State {
                check: registry::key() ^ (state as usize),
                small: SmallBins::EMPTY,
                tree: TreeBins::EMPTY,
                dvsize: 0,
                topsize,
                dv: ptr::null_mut(),
                top,
                top_seg: seg,
                segments: seg,
                direct: ptr::null_mut(),
                direct_count: 0,
                direct_bytes: 0,
                max_direct_count: 0,
                max_direct_bytes: 0,
                max_segment_bytes: commit,
                footprint: commit,
                max_footprint: commit,
                footprint_limit: 0,
                top_clean: top as usize + MEM_OFFSET,
                purged: 0,
                tree_bytes: 0,
                epoch: 0,
                carved_clean: ptr::null_mut(),
                config,
                shared: ptr::null(),
                lock: RawLock::new(),
                remote: AtomicPtr::new(ptr::null_mut()),
                attached: AtomicUsize::new(0),
                uses: AtomicUsize::new(0),
                decayed_at: 0,
                dirty_mark: 0,
                spare: ptr::null_mut(),
                debug: DebugConfig::default(),
                quick: ptr::null_mut(),
                abandoned: false,
                segment_tag: registry::PLAIN,
                source,
            });
            Chunk::set_head(top, topsize | Head::PINUSE);
            Segment::write_fencepost(seg, false);
            Some(Heap {
                state: NonNull::new_unchecked(state),
            })
        }
    }

    #[inline(always)]
    pub(crate) fn state(&self) -> &State<S> {
        // SAFETY: the state lives as long as the handle.
        unsafe { self.state.as_ref() }
    }

    #[inline(always)]
    pub(crate) fn state_mut(&mut self) -> &mut State<S> {
        // SAFETY: the state lives as long as the handle, which is unique.
        unsafe { self.state.as_mut() }
    }

    /// The raw state pointer (for the arena layer, which locks around it).
    pub(crate) fn as_raw(&self) -> *mut State<S> {
        self.state.as_ptr()
    }

    /// Takes ownership back from [`Heap::as_raw`] + `mem::forget`.
    ///
    /// # Safety
    /// `state` must come from a heap that was forgotten, used at most once.
    pub(crate) unsafe fn from_raw(state: *mut State<S>) -> Self {
        Heap {
            // SAFETY: a state pointer is never null (caller).
            state: unsafe { NonNull::new_unchecked(state) },
        }
    }

    /// Allocates at least `bytes` bytes, 16-aligned. Null if the request
    /// cannot be met (too large, OS refused, footprint limit).
    #[inline]
    pub fn malloc(&mut self, bytes: usize) -> *mut u8 {
        self.state_mut().malloc(bytes)
    }

    /// Frees an allocation. Null is ignored.
    ///
    /// # Safety
    /// `mem` must be null or a live pointer from this heap. Double frees,
    /// foreign and interior pointers are detected where possible and abort
    /// the process with a one-line message.
    #[inline]
    pub unsafe fn free(&mut self, mem: *mut u8) {
        // SAFETY: forwarded to the caller.
        unsafe { self.state_mut().free(mem) }
    }

    /// Allocates `n * size` zeroed bytes; null on overflow or failure.
    pub fn calloc(&mut self, n: usize, size: usize) -> *mut u8 {
        self.state_mut().calloc(n, size)
    }

    /// Resizes an allocation, moving it if needed. `realloc(null, n)` is
    /// `malloc(n)`; `realloc(p, 0)` frees `p` and returns null (dlmalloc's
    /// REALLOC_ZERO_BYTES_FREES). On failure returns null and `mem` stays
    /// valid and unchanged.
    ///
    /// # Safety
    /// `mem` must be null or a live pointer from this heap.
    pub unsafe fn realloc(&mut self, mem: *mut u8, bytes: usize) -> *mut u8 {
        if mem.is_null() {
            return self.malloc(bytes);
        }
        if bytes == 0 {
            // SAFETY: forwarded to the caller.
            unsafe { self.free(mem) };
            return ptr::null_mut();
        }
        // SAFETY: forwarded to the caller.
        unsafe { self.state_mut().realloc(mem, bytes) }
    }

    /// Resizes an allocation only if it can stay where it is. Returns
    /// whether it did; the allocation is unchanged otherwise.
    ///
    /// # Safety
    /// `mem` must be a live pointer from this heap.
    pub unsafe fn realloc_in_place(&mut self, mem: *mut u8, bytes: usize) -> bool {
        // SAFETY: forwarded to the caller.
        unsafe { self.state_mut().realloc_in_place(mem, bytes) }
    }

    /// Allocates `bytes` aligned to `alignment` (rounded up to a power of
    /// two). Null on failure.
    pub fn memalign(&mut self, alignment: usize, bytes: usize) -> *mut u8 {
        self.state_mut().memalign(alignment, bytes)
    }

    /// Bytes usable at `mem` (at least what was asked).
    ///
    /// # Safety
    /// `mem` must be a live pointer from this heap.
    pub unsafe fn usable_size(&self, mem: *mut u8) -> usize {
        // SAFETY: forwarded to the caller.
        unsafe { self.state().usable_size(mem) }
    }

    /// Is `mem` a pointer into this heap's live memory? Never aborts, reads
    /// nothing that the registry has not vouched for.
    pub fn owns(&self, mem: *mut u8) -> bool {
        self.state().owns(mem)
    }

    /// `n` zeroed blocks of `size` bytes carved from one chunk, written to
    /// `out[..n]` (dlmalloc's `independent_calloc`). Each block can be freed
    /// on its own. Returns false (allocating nothing) on failure.
    pub fn independent_calloc(&mut self, n: usize, size: usize, out: &mut [*mut u8]) -> bool {
        self.state_mut().ialloc(n, &|_| size, true, out)
    }

    /// Blocks of the given sizes carved from one chunk, written to
    /// `out[..sizes.len()]` (dlmalloc's `independent_comalloc`).
    pub fn independent_comalloc(&mut self, sizes: &[usize], out: &mut [*mut u8]) -> bool {
        self.state_mut()
            .ialloc(sizes.len(), &|i| sizes[i], false, out)
    }

    /// Frees every non-null pointer of `ptrs` that belongs to this heap and
    /// nulls its slot (dlmalloc's `bulk_free`). Returns how many were left
    /// because another heap owns them.
    ///
    /// # Safety
    /// Each non-null pointer must be live (in this heap or another).
    pub unsafe fn bulk_free(&mut self, ptrs: &mut [*mut u8]) -> usize {
        let mut unfreed = 0;
        for slot in ptrs.iter_mut() {
            if slot.is_null() {
                continue;
            }
            if self.owns(*slot) {
                // SAFETY: a live pointer of this heap (caller + owns).
                unsafe { self.free(*slot) };
                *slot = ptr::null_mut();
            } else {
                unfreed += 1;
            }
        }
        unfreed
    }

    /// Returns unused memory to the OS, keeping `pad` bytes in top. Returns
    /// whether anything was released.
    pub fn trim(&mut self, pad: usize) -> bool {
        self.state_mut().trim(pad)
    }

    /// Gives the whole pages inside free chunks back to the OS, keeping the
    /// chunks (see `heap::free`, "Purging"); returns the bytes purged. Less
    /// than [`trim`](Self::trim), which also consolidates, unmaps empty
    /// segments and trims top.
    pub fn purge(&mut self) -> usize {
        // SAFETY: the heap is consistent between public calls.
        unsafe { self.state_mut().purge(usize::MAX, 0) }
    }

    /// Bytes currently obtained from the OS (committed segment bytes plus
    /// direct mappings).
    pub fn footprint(&self) -> usize {
        self.state().footprint
    }

    /// The largest footprint so far.
    pub fn max_footprint(&self) -> usize {
        self.state().max_footprint
    }

    /// The footprint limit (0 = none).
    pub fn footprint_limit(&self) -> usize {
        self.state().footprint_limit
    }

    /// Sets the footprint limit, rounded up to whole pages (0 = none).
    /// Requests that would take the footprint past it fail with null.
    /// Returns the limit in effect.
    pub fn set_footprint_limit(&mut self, bytes: usize) -> usize {
        let page = self.state().source.page_size();
        let limit = if bytes == 0 || bytes > usize::MAX - page {
            0
        } else {
            align_up(bytes, page)
        };
        self.state_mut().footprint_limit = limit;
        limit
    }

    /// The current tunables.
    pub fn config(&self) -> Config {
        self.state().config
    }

    /// Changes the tunables (the mmap threshold is capped at 32 MiB).
    pub fn set_config(&mut self, config: Config) {
        self.state_mut().config = Config {
            mmap_threshold: config.mmap_threshold.min(MAX_SEGMENT_CHUNK),
            ..config
        };
    }

    /// The page source.
    pub fn source(&self) -> &S {
        &self.state().source
    }
}

impl<S: PageSource> Heap<S> {
    /// The heap's statistics (walks the heap: O(chunks)).
    pub fn stats(&self) -> Stats {
        self.state().stats()
    }

    /// Verifies every invariant of the heap; see [`crate::heap::check`].
    pub fn check(&self) -> Result<(), CheckError> {
        self.state().check()
    }
}

impl<S: PageSource> Heap<S> {
    /// Gives this heap's segments, present and future, the registry tag
    /// `tag` (1..=`registry::MAX_ARENA_TAG`): the process allocator numbers
    /// its arenas this way, so that the free fast path can tell a chunk of
    /// the thread's own arena from any other with the registry lookup it
    /// makes anyway.
    pub(crate) fn set_segment_tag(&mut self, tag: u8) {
        assert!((1..=registry::MAX_ARENA_TAG).contains(&tag));
        let st = self.state_mut();
        st.segment_tag = tag;
        let mut seg = st.segments;
        while !seg.is_null() {
            registry::retag_segment(seg as usize, tag);
            // SAFETY: the heap's segment list links live records.
            seg = unsafe { (*seg).next };
        }
    }

    /// Sets the debug level (2 = fill freed memory and verify it on reuse,
    /// and check the whole heap every `period` operations; 0 or 1 = off).
    /// Chunks freed before the switch are not verified.
    pub fn set_debug(&mut self, level: u8, period: u32) {
        let st = self.state_mut();
        st.debug = DebugConfig {
            level,
            period,
            counter: 0,
        };
        if level >= 2 {
            // Fill what is free now, so later verification is sound.
            // SAFETY: the heap is consistent; the walk reads chunk heads.
            unsafe { st.debug_fill_all() };
        }
    }

    /// The debug settings.
    pub fn debug(&self) -> DebugConfig {
        self.state().debug
    }
}

impl<S: PageSource> Drop for Heap<S> {
    fn drop(&mut self) {
        // SAFETY: the handle is unique; after this nothing refers to the
        // heap's memory. The state segment goes last, after the source has
        // been moved out of it.
        unsafe {
            let state = self.state.as_ptr();
            (*state).release_all_direct();
            let mut seg = (*state).segments;
            let mut state_seg = ptr::null_mut();
            while !seg.is_null() {
                let next = (*seg).next;
                if (*seg).flags & SEG_HOLDS_STATE != 0 {
                    state_seg = seg;
                } else {
                    registry::remove_segment(seg as usize);
                    (*seg).check = 0;
                    (*state).source.unmap(seg.cast(), (*seg).reserved);
                }
                seg = next;
            }
            (*state).check = 0;
            let source = ptr::read(ptr::addr_of!((*state).source));
            registry::remove_segment(state_seg as usize);
            (*state_seg).check = 0;
            source.unmap(state_seg.cast(), SEGMENT_SIZE);
        }
    }
}

impl<S: PageSource> core::fmt::Debug for Heap<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.state();
        f.debug_struct("Heap")
            .field("state", &self.state)
            .field("footprint", &s.footprint)
            .field("top", &s.top)
            .field("topsize", &s.topsize)
            .field("dv", &s.dv)
            .field("dvsize", &s.dvsize)
            .finish()
    }
}

// Everything before the first chunk of a heap's first segment (record and
// state), plus the fencepost, must leave any chunk that spans a whole
// segment larger than `MIN_SEGMENT_SPAN` (the free path relies on it).
const _: () = assert!(
    state_offsets::<Mmap>().1 + TOP_FOOT_SIZE + crate::heap::segment::MIN_SEGMENT_SPAN <= 4096
);
const _: () = assert!(
    state_offsets::<Faulty<Mmap>>().1 + TOP_FOOT_SIZE + crate::heap::segment::MIN_SEGMENT_SPAN
        <= 4096
);
