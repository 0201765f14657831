//! The registry: every op a pipeline may name, with its params. Ops join it as they are built,
//! so a pipeline that validates is one datter can run.

use super::spec::{OpSpec, ParamSpec, ParamType as T};

const fn opt(name: &'static str, ty: T) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: false,
    }
}

use super::sketch::{KINDS as SKETCH_KINDS, OUTLINES as SKETCH_OUTLINES, PLACES as SKETCH_PLACES};

/// The reductions `matrix` takes (see [`crate::stats::Reduce`]).
pub const REDUCTIONS: &[&str] = &crate::stats::Reduce::NAMES;

const STAT: &[ParamSpec] = &[opt("columns", T::Texts), opt("by", T::Texts)];
const COLUMNS: &[ParamSpec] = &[opt("columns", T::Texts)];
const CALCULUS: &[ParamSpec] = &[
    opt("x", T::Text),
    opt("columns", T::Texts),
    opt("by", T::Texts),
];

/// An element-wise op: its name, aliases, and its one param.
const fn elementwise(name: &'static str, aliases: &'static [&'static str]) -> OpSpec {
    OpSpec {
        name,
        aliases,
        params: COLUMNS,
    }
}

static OPS: &[OpSpec] = &[
    OpSpec {
        name: "access",
        aliases: &[],
        params: &[opt("from", T::Text), opt("columns", T::Texts)],
    },
    OpSpec {
        name: "label",
        aliases: &[],
        params: &[opt("by", T::Texts)],
    },
    OpSpec {
        name: "select",
        aliases: &[],
        params: &[ParamSpec {
            name: "where",
            ty: T::Text,
            required: true,
        }],
    },
    OpSpec {
        name: "order",
        aliases: &[],
        params: &[opt("by", T::Texts), opt("descending", T::Bool)],
    },
    OpSpec {
        name: "scale",
        aliases: &[],
        params: &[
            opt("method", T::Choice(crate::transform::Scaling::NAMES)),
            opt("columns", T::Texts),
        ],
    },
    OpSpec {
        name: "page",
        aliases: &[],
        params: &[opt("size", T::Count), opt("page", T::Count)],
    },
    OpSpec {
        name: "boxer",
        aliases: &[],
        params: &[opt("column", T::Text), opt("bins", T::Count)],
    },
    OpSpec {
        name: "repeat",
        aliases: &[],
        params: &[opt("by", T::Texts)],
    },
    OpSpec {
        name: "mean",
        aliases: &[],
        params: STAT,
    },
    OpSpec {
        name: "median",
        aliases: &[],
        params: STAT,
    },
    OpSpec {
        name: "mode",
        aliases: &[],
        params: STAT,
    },
    OpSpec {
        name: "stddev",
        aliases: &[],
        params: STAT,
    },
    OpSpec {
        name: "product",
        aliases: &[],
        params: STAT,
    },
    OpSpec {
        name: "l1norm",
        aliases: &[],
        params: STAT,
    },
    OpSpec {
        name: "l2norm",
        aliases: &[],
        params: STAT,
    },
    OpSpec {
        name: "cosine_similarity",
        aliases: &[],
        params: COLUMNS,
    },
    elementwise("sine", &["sin"]),
    elementwise("cos", &[]),
    elementwise("tan", &[]),
    elementwise("asin", &[]),
    elementwise("acos", &[]),
    elementwise("atan", &[]),
    elementwise("sinh", &[]),
    elementwise("cosh", &[]),
    elementwise("tanh", &[]),
    elementwise("exp", &[]),
    elementwise("log", &[]),
    OpSpec {
        name: "derivative",
        aliases: &[],
        params: CALCULUS,
    },
    OpSpec {
        name: "integral",
        aliases: &[],
        params: CALCULUS,
    },
    OpSpec {
        name: "fit",
        aliases: &[],
        params: &[
            opt("x", T::Text),
            opt("y", T::Text),
            opt("kind", T::Choice(&["linear", "polynomial"])),
            opt("degree", T::Count),
            opt("by", T::Texts),
        ],
    },
    OpSpec {
        name: "pca",
        aliases: &[],
        params: &[
            opt("components", T::Count),
            opt("columns", T::Texts),
            opt("centring", T::Choice(&crate::learn::Centring::NAMES)),
        ],
    },
    OpSpec {
        name: "kmeans",
        aliases: &["kmean"],
        params: &[
            opt("k", T::Count),
            opt("columns", T::Texts),
            opt("seed", T::Count),
            opt("iterations", T::Count),
        ],
    },
    OpSpec {
        name: "dbscan",
        aliases: &[],
        params: &[
            opt("eps", T::Number),
            opt("min_samples", T::Count),
            opt("columns", T::Texts),
        ],
    },
    OpSpec {
        name: "matrix",
        aliases: &[],
        params: &[
            opt("metrics", T::Texts),
            opt("reduce", T::Choices(REDUCTIONS)),
            opt("by", T::Texts),
        ],
    },
    OpSpec {
        name: "frame",
        aliases: &[],
        params: &[
            opt("title", T::Text),
            opt("width", T::Count),
            opt("height", T::Count),
            opt("cols", T::Count),
            opt("alone", T::Bool),
        ],
    },
    OpSpec {
        name: "table",
        aliases: &[],
        params: &[
            opt("columns", T::Texts),
            opt("rows", T::Count),
            opt("title", T::Text),
        ],
    },
    OpSpec {
        name: "axis",
        aliases: &[],
        params: &[
            opt("x", T::Text),
            opt("y", T::Text),
            opt("log_x", T::Bool),
            opt("log_y", T::Bool),
        ],
    },
    OpSpec {
        name: "legend",
        aliases: &[],
        params: &[opt("place", T::Choice(&SKETCH_PLACES))],
    },
    OpSpec {
        name: "colour",
        aliases: &["color"],
        params: &[opt("by", T::Text)],
    },
    OpSpec {
        name: "gradient",
        aliases: &[],
        params: &[opt("by", T::Text)],
    },
    OpSpec {
        name: "font",
        aliases: &[],
        params: &[opt("scale", T::Number)],
    },
    OpSpec {
        name: "visualtype",
        aliases: &[],
        params: &[opt("kind", T::Choice(&SKETCH_KINDS))],
    },
    OpSpec {
        name: "plot",
        aliases: &[],
        params: &[
            opt("kind", T::Choice(&SKETCH_KINDS)),
            opt("x", T::Text),
            opt("y", T::Text),
            opt("value", T::Text),
            opt("bins", T::Count),
        ],
    },
    OpSpec {
        name: "animate",
        aliases: &[],
        params: &[
            opt("over", T::Text),
            opt("frames", T::Count),
            opt("mode", T::Choice(&super::animate::MODES)),
            opt("delay_ms", T::Count),
        ],
    },
    OpSpec {
        name: "clusters",
        aliases: &[],
        params: &[
            opt("method", T::Choice(&["dbscan", "kmeans"])),
            opt("circle", T::Bool),
            opt("outline", T::Choice(&SKETCH_OUTLINES)),
            opt("label", T::Bool),
            opt("drop_noise", T::Bool),
            opt("eps", T::Number),
            opt("min_samples", T::Count),
            opt("k", T::Count),
            opt("seed", T::Count),
            opt("columns", T::Texts),
        ],
    },
    OpSpec {
        name: "point",
        aliases: &[],
        params: &[
            opt("x", T::Number),
            opt("y", T::Number),
            opt("label", T::Text),
        ],
    },
    OpSpec {
        name: "line",
        aliases: &[],
        params: &[
            opt("x1", T::Number),
            opt("y1", T::Number),
            opt("x2", T::Number),
            opt("y2", T::Number),
        ],
    },
    OpSpec {
        name: "circle",
        aliases: &[],
        params: &[
            opt("x", T::Number),
            opt("y", T::Number),
            opt("radius", T::Number),
        ],
    },
    OpSpec {
        name: "shape",
        aliases: &[],
        params: &[ParamSpec {
            name: "points",
            ty: T::Points,
            required: true,
        }],
    },
    OpSpec {
        name: "text",
        aliases: &[],
        params: &[
            ParamSpec {
                name: "text",
                ty: T::Text,
                required: true,
            },
            opt("x", T::Number),
            opt("y", T::Number),
        ],
    },
    OpSpec {
        name: "expr",
        aliases: &[],
        params: &[
            ParamSpec {
                name: "formula",
                ty: T::Text,
                required: true,
            },
            opt("x", T::Number),
            opt("y", T::Number),
        ],
    },
    OpSpec {
        name: "report",
        aliases: &[],
        params: &[opt("title", T::Text)],
    },
    OpSpec {
        name: "handoff",
        aliases: &[],
        params: &[opt("to", T::Text)],
    },
];

/// Where `handoff` sends the output when no `to` is given: below the run's node.
pub const HANDOFF_DEFAULT: &str = "meta/reports";

/// Every op, in the registry's order.
pub fn ops() -> &'static [OpSpec] {
    OPS
}

/// The op named `name` (or one of its aliases).
pub fn lookup(name: &str) -> Option<&'static OpSpec> {
    OPS.iter()
        .find(|o| o.name == name || o.aliases.contains(&name))
}
