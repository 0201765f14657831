//! Marks: the laid-out picture in pixels, which the PNG and SVG writers both draw, so the two
//! files agree on every position.

use super::colour::Rgba;

/// A rectangle in pixels, y downwards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    /// Left.
    pub x: f32,
    /// Top.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

impl Rect {
    /// A rectangle from its left, top, width and height.
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Rect {
        Rect {
            x,
            y,
            w: w.max(0.0),
            h: h.max(0.0),
        }
    }
    /// Right edge.
    pub fn right(&self) -> f32 {
        self.x + self.w
    }
    /// Bottom edge.
    pub fn bottom(&self) -> f32 {
        self.y + self.h
    }
    /// Whether the two overlap by more than a hair.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.right() - 0.5
            && o.x < self.right() - 0.5
            && self.y < o.bottom() - 0.5
            && o.y < self.bottom() - 0.5
    }
    /// Whether `p` lies inside.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && x <= self.right() && y >= self.y && y <= self.bottom()
    }
}

/// An outline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stroke {
    /// Its colour.
    pub colour: Rgba,
    /// Its width in pixels.
    pub width: f32,
}

/// Which way text is anchored at its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// The position is the text's start.
    Start,
    /// The position is its middle.
    Middle,
    /// The position is its end.
    End,
}

/// What a text is for; the SVG writes it as the element's class, so tests can find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A figure's title.
    Title,
    /// An axis title.
    AxisTitle,
    /// A tick label of the x axis.
    TickX,
    /// A tick label of the y axis.
    TickY,
    /// A legend entry.
    Legend,
    /// A colour bar's tick label.
    ColourBar,
    /// A heatmap cell's value.
    Cell,
    /// An annotation or cluster label.
    Note,
    /// A table's column name.
    TableHead,
    /// A table's cell.
    TableCell,
}

impl Role {
    /// The SVG class name.
    pub fn class(self) -> &'static str {
        match self {
            Role::Title => "title",
            Role::AxisTitle => "axis-title",
            Role::TickX => "tick-x",
            Role::TickY => "tick-y",
            Role::Legend => "legend",
            Role::ColourBar => "colour-bar",
            Role::Cell => "cell",
            Role::Note => "note",
            Role::TableHead => "table-head",
            Role::TableCell => "table-cell",
        }
    }
}

/// A line of text.
#[derive(Clone, Debug, PartialEq)]
pub struct Text {
    /// Anchor position.
    pub x: f32,
    /// Baseline position.
    pub y: f32,
    /// What it says.
    pub text: String,
    /// Em size in pixels.
    pub size: f32,
    /// How it hangs off its position.
    pub anchor: Anchor,
    /// Rotated a quarter turn anticlockwise (reads bottom to top), as a y-axis title.
    pub vertical: bool,
    /// Its colour.
    pub colour: Rgba,
    /// Bold face.
    pub bold: bool,
    /// What it is for.
    pub role: Role,
    /// Its measured advance width.
    pub width: f32,
    /// Its box on the canvas (ascent to descent, rotated when vertical).
    pub bounds: Rect,
}

/// Point colours of a dense layer.
#[derive(Clone, Debug, PartialEq)]
pub enum DotColours {
    /// All alike.
    One(Rgba),
    /// One per point.
    Each(Vec<Rgba>),
}

/// Something to draw.
#[derive(Clone, Debug, PartialEq)]
pub enum Mark {
    /// A rectangle.
    Rect {
        /// Where.
        rect: Rect,
        /// Filled with.
        fill: Option<Rgba>,
        /// Outlined with.
        stroke: Option<Stroke>,
    },
    /// A polyline or polygon.
    Path {
        /// Its corners.
        points: Vec<(f32, f32)>,
        /// Closed into a polygon.
        closed: bool,
        /// Filled with (closed paths).
        fill: Option<Rgba>,
        /// Outlined with.
        stroke: Option<Stroke>,
    },
    /// A circle.
    Circle {
        /// Centre.
        cx: f32,
        /// Centre.
        cy: f32,
        /// Radius.
        r: f32,
        /// Filled with.
        fill: Option<Rgba>,
        /// Outlined with.
        stroke: Option<Stroke>,
    },
    /// Many same-sized discs, stamped rather than drawn as paths.
    Dots {
        /// Centres, in pixels.
        xy: Vec<[f32; 2]>,
        /// Radius in pixels.
        radius: f32,
        /// Colours.
        colours: DotColours,
    },
    /// A grid of filled cells covering `rect`, row 0 at the top.
    Cells {
        /// Where.
        rect: Rect,
        /// Columns.
        cols: usize,
        /// Rows.
        rows: usize,
        /// Row-major colours.
        colours: Vec<Rgba>,
    },
    /// Text.
    Text(Text),
}

/// Marks drawn together, optionally clipped to a rectangle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layer {
    /// Nothing of the layer shows outside this.
    pub clip: Option<Rect>,
    /// A class for the SVG group, e.g. `legend`.
    pub class: &'static str,
    /// In drawing order.
    pub marks: Vec<Mark>,
}

/// A laid-out figure: its size and layers in drawing order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Background first.
    pub layers: Vec<Layer>,
}

impl Canvas {
    /// Every text mark, in drawing order.
    pub fn texts(&self) -> impl Iterator<Item = &Text> {
        self.layers
            .iter()
            .flat_map(|l| l.marks.iter())
            .filter_map(|m| match m {
                Mark::Text(t) => Some(t),
                _ => None,
            })
    }
}
