//! Command-line grammar (clap). Parsing only: no behaviour here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use plotter2_node::Address;
use plotter2_node::nodeconf::Assignment;
use plotter2_node::protocol::{RequestId, RunId};
use plotter2_node::reference::BundleReference;
use plotter2_node::sweep::Sweep;

#[derive(Parser, Debug)]
#[command(
    name = "plotter2",
    version,
    about = "Gateway and coordinator between experiments and their data"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// plotter2 home (default: $P2_HOME, else ~/.plotter2)
    #[arg(long, global = true, env = "P2_HOME")]
    pub home: Option<PathBuf>,
    /// NATS URL (default: $P2_NATS, else the URL in <home>/config/cluster.toml)
    #[arg(long, global = true, env = "P2_NATS")]
    pub nats: Option<String>,
    /// Who is asking (default: $P2_USER, else the OS user)
    #[arg(long, global = true, env = "P2_USER")]
    pub user: Option<String>,
    /// Print the trace id of each request on stderr
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Give up on a request after this many seconds
    #[arg(long, global = true, default_value_t = 30.0)]
    pub timeout: f64,
    /// Object store: a directory, file:///dir, or s3://bucket?endpoint=…&region=… (default:
    /// $P2_STORE, else the store in <home>/config/cluster.toml, else <home>/source)
    #[arg(long, global = true, env = "P2_STORE")]
    pub store: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run NATS and the plotter2 roles on this machine, in the foreground (Ctrl-C stops all)
    Up(UpArgs),
    /// Run one coordinator (a raft node of the registry)
    Coordinator(CoordinatorArgs),
    /// Run a stager: watch an inbox, receive pushes, upload bundles to the object store
    Stager(StagerArgs),
    /// Run a worker: take runs of one subtree from the work queue and execute them
    Worker(WorkerArgs),
    /// A worker's guard process (started by the worker itself): kills the worker's tasks
    /// when the worker dies
    #[command(name = plotter2_worker::guard::SUBCOMMAND, hide = true)]
    WorkerGuard,
    /// One attempt of a pipeline task (started by a worker): runs the plan's steps over its
    /// input files and writes the results into OUT
    #[command(name = "pipeline-run", hide = true)]
    PipelineRun {
        plan: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The task's memory limit in bytes
        #[arg(long)]
        memory: Option<u64>,
    },
    /// Send a bundle folder to a stager and wait until it is committed
    Push {
        dir: PathBuf,
        /// Where it goes (default: the manifest's meta.address)
        addr: Option<Address>,
        #[arg(long)]
        json: bool,
    },
    /// Materialise a bundle version (ADDR[@V|@latest]), or print one file (ADDR[@V]:path)
    Get {
        reference: BundleReference,
        /// Folder to write into (default: <home>/output/<address>/v<N>)
        #[arg(long)]
        to: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The files of a bundle version (ADDR[@V|@latest], or ADDR[@V]:folder for what is
    /// below it), in path order, a page at a time
    Files {
        reference: BundleReference,
        /// At most this many files; a listing cut short says how many are left and how to go on
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Go on after this path (where a listing cut short stopped)
        #[arg(long, value_name = "PATH")]
        after: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create a node and any missing parents
    New {
        addr: Address,
        /// key=value (dotted keys; JSON values, plain text otherwise)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<Assignment>,
        #[arg(long)]
        json: bool,
    },
    /// Set config keys on a node
    Set {
        addr: Address,
        #[arg(value_name = "KEY=VALUE", required = true)]
        set: Vec<Assignment>,
        #[arg(long)]
        json: bool,
    },
    /// List the children of a node (-R: the whole subtree)
    Ls {
        #[arg(default_value = "/")]
        addr: Address,
        /// Include archived nodes
        #[arg(long)]
        all: bool,
        /// The whole subtree, depth first, in one request (the same as `plotter2 tree`)
        #[arg(short = 'R', long)]
        recursive: bool,
        #[command(flatten)]
        page: TreePage,
        #[arg(long)]
        json: bool,
    },
    /// The whole subtree of a node, depth first (the same as `plotter2 ls -R`)
    Tree {
        #[arg(default_value = "/")]
        addr: Address,
        /// Include archived nodes and what is below them
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        page: TreePage,
        #[arg(long)]
        json: bool,
    },
    /// Show a node: own and effective config, children
    Show {
        addr: Address,
        #[arg(long)]
        json: bool,
    },
    /// Every event on a node, oldest first
    History {
        addr: Address,
        #[arg(long)]
        json: bool,
    },
    /// Hide a node from listings (nothing is deleted)
    Archive {
        addr: Address,
        #[arg(long)]
        json: bool,
    },
    /// The request log
    Requests {
        /// Only requests with a sequence number above this
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One request of the log
    Request {
        id: RequestId,
        #[arg(long)]
        json: bool,
    },
    /// Ask for runs of a task defined on ADDR or an ancestor (one run, or one per sweep point)
    Run {
        addr: Address,
        task: String,
        /// key=value overriding this run's params (dotted keys; JSON values)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<Assignment>,
        /// key=v1,v2,…: one run per value (several --sweep: the cartesian product), each at a
        /// new node ADDR/sweep-<n>/<key=value>
        #[arg(long = "sweep", value_name = "KEY=V1,V2,…")]
        sweep: Vec<Sweep>,
        /// Wait until every run has ended; exit non-zero unless all succeeded
        #[arg(long)]
        wait: bool,
        /// Run even where a succeeded run with the same fingerprint (task, code, inputs,
        /// params) could be reused
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// stdout+stderr of a run's attempts
    Logs {
        run: RunId,
        /// Keep printing while the run runs
        #[arg(short, long)]
        follow: bool,
    },
    /// End a run that has not ended; its worker kills it
    Cancel {
        run: RunId,
        #[arg(long)]
        json: bool,
    },
    /// The rules in force at ADDR or defined below it: when each last fired, the run it
    /// made, and why it did not fire when it did not
    Rules {
        #[arg(default_value = "/")]
        addr: Address,
        #[arg(long)]
        json: bool,
    },
    /// Print events at ADDR and below as they happen (nodes, config, bundles, runs, rules),
    /// each once and in order, also those that happened while it was disconnected
    Watch {
        #[arg(default_value = "/")]
        addr: Address,
        /// Start after this request seq instead of now (prints what followed it first)
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Runs at ADDR and below
    Runs {
        #[arg(default_value = "/")]
        addr: Address,
        #[arg(long)]
        json: bool,
    },
    /// How a bundle version (ADDR[@V], default the latest) was made: the run, its task,
    /// params and code, and each input down to the pushes; --downstream: what was made from it
    Lineage {
        reference: BundleReference,
        /// The other way: the runs that read it, what they made, and on
        #[arg(long)]
        downstream: bool,
        #[arg(long, conflicts_with = "dot")]
        json: bool,
        /// A Graphviz digraph of versions and runs (e.g. `| dot -Tsvg > lineage.svg`)
        #[arg(long)]
        dot: bool,
    },
    /// Why a run ran: its fingerprint part by part, whether it was executed, reused or cut
    /// off, what changed since the run before it, and what rules decided about it
    Explain {
        run: RunId,
        #[arg(long)]
        json: bool,
    },
    /// The whole cluster at one glance: leader and term, lag, runs queued and running,
    /// workers' slots, stagers' spools
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Raft cluster membership and health
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

impl Command {
    /// The subcommand's name, for the span around it (`run`, `push`, `cluster`).
    pub fn name(&self) -> String {
        let debug = format!("{self:?}");
        debug
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_lowercase()
    }
}

/// How much of a subtree one listing shows.
#[derive(Args, Debug, Clone)]
pub struct TreePage {
    /// With -R: at most this many nodes (default 1000, at most 10000); a listing cut short
    /// says how many are left
    #[arg(long)]
    pub limit: Option<u32>,
    /// With -R: go on after this address (where a listing cut short stopped)
    #[arg(long, value_name = "ADDR")]
    pub after: Option<Address>,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Every coordinator: id, raft address, role, pid, log and applied index
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Add a coordinator: joins as learner, promoted to voter once caught up
    Add {
        id: u64,
        raft_addr: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a coordinator from the voters
    Remove {
        id: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// NATS client port (default 4222, or what this home used before)
    #[arg(long)]
    pub nats_port: Option<u16>,
    /// Address NATS listens on; 0.0.0.0 lets other machines push and run workers
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: String,
    /// Number of coordinators (raft nodes): 1, 3 or 5
    #[arg(long)]
    pub coordinators: Option<u8>,
    /// Run no stager (by default one watches <home>/inbox)
    #[arg(long)]
    pub no_stager: bool,
    /// Worker processes to run, each serving / with 4 slots
    #[arg(long, default_value_t = 1)]
    pub workers: u8,
}

/// Where a role serves its Prometheus metrics.
#[derive(Args, Debug, Clone, Default)]
pub struct MetricsArg {
    /// Serve Prometheus metrics on http://HOST:PORT/metrics
    #[arg(long = "metrics", env = "P2_METRICS_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub metrics: MetricsArg,
    /// The subtree this worker's pool serves (pools must not overlap)
    #[arg(long, default_value = "/")]
    pub serve: Address,
    /// Runs at once
    #[arg(long, default_value_t = 4)]
    pub slots: usize,
    /// Name in run records and NATS subjects: letters, digits, - and _ (default: host name
    /// and pid)
    #[arg(long)]
    pub name: Option<plotter2_node::WorkerName>,
}

#[derive(Args, Debug, Clone)]
pub struct StagerArgs {
    #[command(flatten)]
    pub metrics: MetricsArg,
    /// Folder to watch (default: <home>/inbox)
    #[arg(long)]
    pub inbox: Option<PathBuf>,
    /// Spool folder (default: <home>/temp)
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// Name of this stager on NATS: letters, digits, - and _ (default: host name and pid)
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds between inbox rescans when no event arrives
    #[arg(long, default_value_t = 2.0)]
    pub rescan: f64,
}

#[derive(Args, Debug, Clone)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub metrics: MetricsArg,
    /// TOML file with any of the flags below (flags and env win)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Raft node id (unique in the cluster, > 0)
    #[arg(long, env = "P2_COORDINATOR_ID")]
    pub id: Option<u64>,
    /// host:port this node listens on for raft peers, and that they use to reach it
    #[arg(long, env = "P2_RAFT_ADDR")]
    pub raft_addr: Option<String>,
    /// Directory of this node's raft store (default: <home>/registry/<id>)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Initialize a new cluster with these members: 1=127.0.0.1:7001,2=…  (ignored once initialized)
    #[arg(long, value_delimiter = ',')]
    pub init: Vec<String>,
    /// Snapshot (and compact the log) after this many entries, or after as many as the registry holds requests when that is more
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Log entries kept after a snapshot
    #[arg(long)]
    pub keep_logs: Option<u64>,
    /// Leader heartbeat interval, milliseconds
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout, milliseconds (the maximum is twice this)
    #[arg(long)]
    pub election_ms: Option<u64>,
    /// Seconds a write may wait to commit before the client hears "no quorum"
    #[arg(long)]
    pub write_timeout: Option<f64>,
    /// Seconds an attempt may run before the leader checks that its worker still runs it
    /// (an attempt nobody runs is queued again)
    #[arg(long)]
    pub lost_after: Option<f64>,
}
