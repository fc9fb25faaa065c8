//! Smoke test: one pass over every store operation, then a reopen.

use hearth_store::{ListOptions, Options, Store};
use serde_json::json;

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Options::default()).unwrap();
    for i in 0..1000 {
        s.put(
            &format!("item:{i:04}"),
            json!({"type":"Item","value": i, "name": format!("thing {i}")}),
        )
        .unwrap();
    }
    s.patch("item:0001", json!({"extra": true, "value": null}))
        .unwrap();
    let d = s.get("item:0001").unwrap().unwrap();
    assert_eq!(
        d.to_value(),
        json!({"type":"Item","name":"thing 1","extra":true})
    );
    let all: Vec<_> = s
        .list(ListOptions {
            prefix: Some("item:".into()),
            ..Default::default()
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(all.len(), 1000);
    let q = s
        .query(json!({"value": 5}).as_object().unwrap(), 10, None)
        .unwrap();
    assert_eq!(q.len(), 1);
    let hits = s.search("thing 42", 5).unwrap();
    assert!(!hits.is_empty(), "no hits");
    assert!(s.delete("item:0002").unwrap().is_some());
    assert!(s.get("item:0002").unwrap().is_none());
    let st = s.stats().unwrap();
    println!("{st:?}");
    assert_eq!(st.documents, 999);
    drop(s);
    let s = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(
        s.get("item:0001").unwrap().unwrap().to_value(),
        json!({"type":"Item","name":"thing 1","extra":true})
    );
    assert!(s.get("item:0002").unwrap().is_none());
    let mut sub = s.subscribe(0);
    let mut n = 0;
    while let Some(ev) = sub.next_timeout(std::time::Duration::from_millis(100)) {
        ev.unwrap();
        n += 1;
    }
    assert_eq!(n, 1002);
}
