//! Feeds arbitrary bytes, split at arbitrary points, to `FrameDecoder`.
//!
//! Input layout: byte 0 picks `max_frame_bytes`, byte 1 the number of split
//! points, the next bytes the chunk lengths, the rest is the stream.
//! Checks: no panic; the decoder never buffers more than `max_frame_bytes`;
//! `push` always makes progress; and the split stream decodes exactly like
//! the same stream pushed whole.

#![no_main]

use hearth_proto::{Frame, FrameDecoder, FrameError};
use libfuzzer_sys::fuzz_target;

fn drive<'a>(
    decoder: &mut FrameDecoder,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Result<Frame, FrameError>> {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut rest = chunk;
        loop {
            let taken = decoder.push(rest);
            assert!(taken <= rest.len());
            assert!(decoder.buffered() <= decoder.max_frame_bytes());
            rest = &rest[taken..];
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        assert!(frame.header.frame_len() <= decoder.max_frame_bytes());
                        assert_eq!(frame.payload.len(), frame.header.payload_len as usize);
                        out.push(Ok(frame));
                    }
                    Ok(None) => break,
                    Err(e) if e.is_fatal() => {
                        let _ = e.to_error_body();
                        out.push(Err(e));
                        return out;
                    }
                    Err(e) => out.push(Err(e)),
                }
            }
            if rest.is_empty() {
                break;
            }
            assert!(taken > 0, "push took nothing and next_frame had nothing");
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&limit, data)) = data.split_first() else {
        return;
    };
    let Some((&splits, data)) = data.split_first() else {
        return;
    };
    // 24..=4104 bytes: small enough that the limit is often hit.
    let max_frame_bytes = 24 + usize::from(limit) * 16;
    let splits = usize::from(splits % 16).min(data.len());
    let (lengths, stream) = data.split_at(splits);

    let mut chunks = Vec::new();
    let mut rest = stream;
    for &len in lengths {
        let (chunk, tail) = rest.split_at(usize::from(len).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks.push(rest);

    let whole = drive(
        &mut FrameDecoder::with_max_frame_bytes(max_frame_bytes),
        [stream],
    );
    let split = drive(
        &mut FrameDecoder::with_max_frame_bytes(max_frame_bytes),
        chunks,
    );
    assert_eq!(whole, split);

    for frame in whole.iter().flatten() {
        if frame.header.kind == hearth_proto::FrameKind::Error {
            let _ = frame.error_body();
        }
    }
});
