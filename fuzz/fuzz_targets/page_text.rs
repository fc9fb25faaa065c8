//! Feeds arbitrary bytes, as one stream chunk from the server, to the
//! client's text forms of a page and of a search's matches
//! (`Client::list_json_within`, `search_json_within`), which copy the
//! server's text instead of parsing it.
//!
//! Checks: no panic; whatever text a form gives is JSON text; where the
//! parsed form (`Client::list_within`, `search_within`) accepts the chunk
//! too, both give the same ids, data and scores
//! (`hearth_ipc::fuzz_page_text` asserts it).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hearth_ipc::fuzz_page_text(data);
});
