//! `tessera art SNAPSHOT`: a saved snapshot drawn page by page.

use crate::common::{out, parse_addr, write_file, PageArg};
use crate::replay::which;
use crate::ArtArgs;
use std::process::ExitCode;
use tessera_viz::bins::{Bins, Histogram};
use tessera_viz::files::load_snapshots;
use tessera_viz::film::Film;
use tessera_viz::page::{page_of, PageView};
use tessera_viz::text::{self, GridOptions};
use tessera_viz::{html, Style};

/// Runs `art`.
pub fn run(args: &ArtArgs, style: Style) -> Result<ExitCode, String> {
    let path = &args.snapshot;
    let snaps = load_snapshots(path).map_err(|e| e.to_string())?;
    let at = args.at.as_deref().map(parse_addr).transpose()?;
    // With --at, the arena is the one that holds the address.
    let arena = match at {
        Some(a) => snaps
            .iter()
            .position(|s| s.chunk_at(a).is_some() || s.page(page_of(a)).is_some())
            .ok_or_else(|| format!("{}: no arena of the snapshot holds {a:#x}", path.display()))?,
        None => args.arena,
    };
    let Some(snap) = snaps.get(arena) else {
        return Err(format!(
            "{}: there is no arena {arena} (the file has {})",
            path.display(),
            snaps.len()
        ));
    };
    let page = match (at, args.page) {
        (Some(a), _) => page_of(a),
        (None, PageArg::Addr(a)) => page_of(a),
        (None, PageArg::Auto) => tessera_viz::film::busiest_page(snap)
            .ok_or_else(|| format!("{}: the snapshot has no chunks", path.display()))?,
    };
    let view = PageView::new(snap, page, None);
    let mut o = format!(
        "{} · arena {arena} of {} · {} chunks, {} pages captured\n",
        path.display(),
        snaps.len(),
        snap.chunks.len(),
        snap.pages.len()
    );
    let mut opts = GridOptions::default();
    if let Some(a) = at {
        if let Some(c) = snap.chunk_at(a) {
            opts.highlight = Some((
                c.addr.max(page) - page,
                (c.addr + c.size).min(page + 4096) - page,
            ));
        }
        o.push_str(&which(&view, a));
    }
    o.push_str(&text::page(&view, &opts, style));
    o.push('\n');
    o.push_str(&Bins::of(snap).text(&format!("arena {arena}"), &|a| view.name_ptr(a)));
    o.push('\n');
    o.push_str(
        &Histogram::free_chunks(snap).text("free-chunk sizes (bins and dv; top apart):", 30),
    );
    out(&o);
    if let Some(file) = &args.html {
        let film = Film::from_snapshots(&path.display().to_string(), &snaps);
        write_file(file, &html::explorer(&film))?;
        out(&format!("\nWrote {}.\n", file.display()));
    }
    Ok(ExitCode::SUCCESS)
}
