//! Charts drawn on the server as SVG (no script): bars for counts over time, lines for
//! values over time. Colours come from the stylesheet's classes.

use maud::{html, Markup};

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 140.0;
/// Room for the axis labels.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 18.0;

/// One bar per value, oldest first; `labels` name the first and last bar. A bar whose
/// `flagged` value is true is drawn in the warning colour.
pub fn bars(title: &str, values: &[f64], flagged: &[bool], labels: (&str, &str)) -> Markup {
    let max = values.iter().copied().fold(0.0, f64::max);
    let top = nice_top(max);
    let plot = WIDTH - LEFT;
    let step = if values.is_empty() {
        plot
    } else {
        plot / values.len() as f64
    };
    let total: f64 = values.iter().sum();
    html! {
        svg.chart viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img" aria-label={(title) ": " (format_value(total)) " in all, at most " (format_value(max))} {
            title { (title) }
            line.axis x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) {}
            text x="0" y="10" { (format_value(top)) }
            text x="0" y=(HEIGHT - BOTTOM) { "0" }
            @for (index, value) in values.iter().enumerate() {
                @let height = if top > 0.0 { value / top * (HEIGHT - BOTTOM - 4.0) } else { 0.0 };
                @let bad = flagged.get(index).copied().unwrap_or(false);
                rect class=(if bad { "bar bad" } else { "bar" })
                    x=(format!("{:.1}", LEFT + index as f64 * step + step * 0.1))
                    y=(format!("{:.1}", HEIGHT - BOTTOM - height))
                    width=(format!("{:.1}", (step * 0.8).max(0.5)))
                    height=(format!("{:.1}", height)) {
                    title { (format_value(*value)) }
                }
            }
            text x=(LEFT) y=(HEIGHT - 4.0) { (labels.0) }
            text x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { (labels.1) }
        }
    }
}

/// Lines over time, oldest first, each `(class, values)`; a missing value breaks the
/// line. `unit` formats the axis.
pub fn lines(
    title: &str,
    series: &[(&str, Vec<Option<f64>>)],
    labels: (&str, &str),
    unit: fn(f64) -> String,
) -> Markup {
    let max = series
        .iter()
        .flat_map(|(_, values)| values.iter().flatten())
        .copied()
        .fold(0.0, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let points = series.first().map_or(0, |(_, values)| values.len()).max(2);
    let step = (WIDTH - LEFT) / (points - 1) as f64;
    html! {
        svg.chart viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img" aria-label={(title) ", at most " (unit(max))} {
            title { (title) }
            line.axis x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) {}
            text x="0" y="10" { (unit(top)) }
            text x="0" y=(HEIGHT - BOTTOM) { "0" }
            @for (class, values) in series {
                @for run in runs(values) {
                    @let path = run.iter().map(|(index, value)| format!(
                        "{:.1},{:.1}",
                        LEFT + *index as f64 * step,
                        HEIGHT - BOTTOM - value / top * (HEIGHT - BOTTOM - 4.0)
                    )).collect::<Vec<_>>().join(" ");
                    polyline class={"line " (class)} points=(path) {}
                }
            }
            text x=(LEFT) y=(HEIGHT - 4.0) { (labels.0) }
            text x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { (labels.1) }
        }
    }
}

/// The unbroken runs of present values, with their indexes (a single point is drawn as
/// a short run of itself).
fn runs(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut runs: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match value {
            Some(value) => current.push((index, *value)),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    for run in &mut runs {
        if run.len() == 1 {
            let (index, value) = run[0];
            run.push((index, value));
        }
    }
    runs
}

/// A round number at or above `max` for the axis.
fn nice_top(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

pub fn format_value(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_round_up_and_lines_break_where_values_are_missing() {
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(7.0), 10.0);
        assert_eq!(nice_top(13.0), 20.0);
        assert_eq!(nice_top(480.0), 500.0);
        let runs = runs(&[Some(1.0), Some(2.0), None, Some(3.0), None]);
        assert_eq!(
            runs,
            vec![vec![(0, 1.0), (1, 2.0)], vec![(3, 3.0), (3, 3.0)]]
        );
        let svg = bars("Requests", &[1.0, 3.0], &[false, true], ("-1h", "now")).into_string();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("bar bad"));
        assert!(!svg.contains("style="), "the policy forbids inline styles");
    }
}
