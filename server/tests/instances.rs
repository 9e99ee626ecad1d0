//! Several `kontor serve` processes on one PostgreSQL database, as behind a load balancer: they
//! start together on an empty database (one runs the migrations, the others wait), then many
//! clients send declarations for the same meters through all of them at once, each batch twice
//! at the same moment through two different instances, and someone guesses a meter serial
//! through all three. Afterwards every declaration is stored once, each meter's chain is
//! consistent in reading time, every replay got the first outcome, and the guessing met one
//! limit, not one per instance. The database runs every transaction `SERIALIZABLE`, as
//! CockroachDB does, so colliding writers meet serialisation failures that must be retried.
//!
//! Needs the local PostgreSQL (`KONTOR_TEST_POSTGRES`, by default
//! `postgres://postgres@127.0.0.1:5432/test`); fails, saying so, when it is missing.

mod common;

use std::collections::HashMap;

use common::{Instance, import, post};
use serde_json::{Value, json};
use server::store::{SqlStore, Store as _};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

const INSTANCES: usize = 3;
const METERS: usize = 12;
const PER_METER: u64 = 30;
const CLIENTS: usize = 6;

fn subscription(meter: usize) -> String {
    format!("77{meter:08}")
}

fn serial(meter: usize) -> String {
    format!("MI{meter:06}")
}

/// One declaration the clients send.
#[derive(Clone)]
struct Item {
    id: Uuid,
    meter: usize,
    reading: u64,
    read_at: OffsetDateTime,
}

impl Item {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "subscription": subscription(self.meter), "meter_serial": serial(self.meter),
            "reading": self.reading, "read_at": self.read_at.format(&Rfc3339).expect("time"),
        })
    }
}

/// What an answer said about one item; a replay must say the same.
#[derive(Debug, Clone, PartialEq)]
struct Said {
    status: Value,
    code: Value,
    tracking_code: Value,
    consumption_m3: Value,
}

fn said(result: &Value) -> Said {
    Said {
        status: result["status"].clone(),
        code: result["code"].clone(),
        tracking_code: result["tracking_code"].clone(),
        consumption_m3: result["consumption_m3"].clone(),
    }
}

#[test]
fn several_instances_on_one_postgres_keep_every_guarantee() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let name = format!("kontor_instances_{}", std::process::id());
    // Every transaction SERIALIZABLE, as CockroachDB runs them: colliding writers get
    // serialisation failures (40001), which the instances must retry, never lose.
    let serializable = "ALTER DATABASE {name} SET default_transaction_isolation TO 'serializable'";
    let database = runtime.block_on(common::create_database(&name, &[serializable]));
    let dir = common::scratch("instances");

    // Three instances start at once on the empty database: the migrations run once.
    let mut instances: Vec<Instance> =
        (0..INSTANCES).map(|n| Instance::start(&database, &dir, &format!("instance-{n}"))).collect();
    for instance in &mut instances {
        instance.wait_ready();
    }
    let addrs: Vec<String> = instances.iter().map(|i| i.addr.clone()).collect();

    // The registry, imported while they run: billed 10,000 m³ thirty days ago, 3 m³ a day.
    let billed = OffsetDateTime::now_utc() - time::Duration::days(30);
    let billed_text = billed.format(&Rfc3339).expect("time");
    let rows: String = (0..METERS)
        .map(|meter| format!("{},{},5,10000,{billed_text},3.0,\n", subscription(meter), serial(meter)))
        .collect();
    import(&database, &dir, &rows);

    // An hour apart and 2 m³ apart: each reading is plausible after any other.
    let items: Vec<Item> = (1..=PER_METER)
        .flat_map(|step| {
            (0..METERS).map(move |meter| Item {
                id: Uuid::now_v7(),
                meter,
                reading: 10_000 + 2 * step,
                read_at: billed + time::Duration::hours(step as i64),
            })
        })
        .collect();

    // Each client sends its share in batches of one to three, each batch through two instances
    // at the same moment; both answers must agree, and only one may be the first.
    let first: HashMap<Uuid, Said> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let mine: Vec<Item> = items.iter().skip(client).step_by(CLIENTS).cloned().collect();
                let addrs = &addrs;
                scope.spawn(move || {
                    let mut seen = HashMap::new();
                    for (n, batch) in mine.chunks(1 + client % 3).enumerate() {
                        let body = json!({
                            "device_id": Uuid::now_v7(),
                            "submissions": batch.iter().map(Item::json).collect::<Vec<_>>(),
                        });
                        let (a, b) = (&addrs[(client + n) % INSTANCES], &addrs[(client + n + 1) % INSTANCES]);
                        let (one, two) = std::thread::scope(|both| {
                            let one = both.spawn(|| post(a, "/api/v1/sync", &body));
                            let two = both.spawn(|| post(b, "/api/v1/sync", &body));
                            (one.join().expect("first sender"), two.join().expect("second sender"))
                        });
                        assert_eq!((one.0, two.0), (200, 200), "{one:?} {two:?}");
                        for (i, item) in batch.iter().enumerate() {
                            let (x, y) = (&one.1["results"][i], &two.1["results"][i]);
                            assert_eq!(said(x), said(y), "two instances answered one id differently");
                            let firsts = [x, y].iter().filter(|r| r["replayed"] == json!(false)).count();
                            assert_eq!(firsts, 1, "exactly one of the two stored it: {x} {y}");
                            assert!(x["tracking_code"].is_string(), "{x}");
                            seen.insert(item.id, said(x));
                        }
                    }
                    seen
                })
            })
            .collect();
        clients.into_iter().flat_map(|c| c.join().expect("a client")).collect()
    });
    assert_eq!(first.len(), items.len());

    // Every id once more, through the third instance: the first outcome, unchanged.
    for batch in items.chunks(50) {
        let body =
            json!({"device_id": Uuid::now_v7(), "submissions": batch.iter().map(Item::json).collect::<Vec<_>>()});
        let (status, answer) = post(&addrs[2], "/api/v1/sync", &body);
        assert_eq!(status, 200);
        for (item, result) in batch.iter().zip(answer["results"].as_array().expect("results")) {
            assert_eq!(result["replayed"], json!(true));
            assert_eq!(said(result), first[&item.id], "a replay got another outcome");
        }
    }

    // Guessing one meter's serial, spread across the instances: five failures in all, then 429
    // everywhere (five per instance would let fifteen through).
    let guesses: Vec<u16> = (0..9)
        .map(|n| {
            let body = json!({"subscription": subscription(0), "meter_serial": format!("XX{n:06}"), "device_id": Uuid::now_v7()});
            post(&addrs[n % INSTANCES], "/api/v1/meters/verify", &body).0
        })
        .collect();
    assert_eq!(guesses, [404, 404, 404, 404, 404, 429, 429, 429, 429], "one limit across instances");

    // What the database holds.
    runtime.block_on(async {
        let store = SqlStore::connect(&database).await.expect("open the store");
        let mut stored = 0;
        let mut counted = Vec::new();
        for meter in 0..METERS {
            let declarations = store.declarations_of(&subscription(meter)).await.expect("read back");
            stored += declarations.len();
            counted.extend(declarations.iter().filter(|d| d.counts).map(|d| d.seq));
            let mut counting: Vec<_> = declarations.iter().filter(|d| d.counts).collect();
            counting.sort_by_key(|d| d.read_at);
            let mut previous = 10_000;
            for d in counting {
                let reading = d.reading.expect("a counting reading has a value");
                assert!(reading >= previous, "meter {meter}: the chain goes down in reading time");
                assert_eq!(d.consumption_m3, Some(reading - previous), "meter {meter}: consumption along the chain");
                previous = reading;
            }
        }
        assert_eq!(stored, items.len(), "every declaration stored exactly once");
        // The billing feed, written by overlapping transactions of three processes: every counting
        // reading once, at positions 1, 2, 3… without a gap.
        let feed = store.billing_feed(0, 100_000).await.expect("the billing feed");
        let positions: Vec<u64> = feed.iter().map(|e| e.position).collect();
        assert_eq!(positions, (1..=counted.len() as u64).collect::<Vec<_>>(), "feed positions run without a gap");
        let mut billed: Vec<u64> = feed.iter().map(|e| e.seq).collect();
        billed.sort_unstable();
        counted.sort_unstable();
        assert_eq!(billed, counted, "every counting reading is in the feed once");
        let retried: usize =
            instances.iter().map(|i| i.log_text().matches("the database asked to retry").count()).sum();
        println!("{} declarations through {INSTANCES} instances; {retried} serialisation retries", items.len());
        store.close().await;
        drop(instances);
        common::drop_database(&name).await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
