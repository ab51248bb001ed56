//! Collects figures and prints them as `name=value` lines, then as a table.

use std::time::Duration;

pub struct Figures {
    prefix: &'static str,
    rows: Vec<(String, String, String)>,
}

impl Figures {
    pub fn new(prefix: &str) -> Self {
        let prefix: &'static str = match prefix {
            "pg" => "pg",
            _ => "sqlite",
        };
        Self {
            prefix,
            rows: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, value: String, unit: &str) {
        let name = format!("{}_{name}", self.prefix);
        println!("{name}={value}");
        self.rows.push((name, value, unit.to_owned()));
    }

    pub fn rate(&mut self, name: &str, value: f64, unit: &str) {
        self.push(name, format!("{value:.0}"), unit);
    }

    pub fn ratio(&mut self, name: &str, value: f64) {
        self.push(name, format!("{value:.2}"), "x");
    }

    pub fn latency(&mut self, name: &str, value: Duration) {
        self.push(
            &format!("{name}_us"),
            format!("{}", value.as_micros()),
            "µs",
        );
    }

    pub fn print(&self) {
        let width = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(4);
        println!();
        println!("| {:width$} | {:>12} | unit |", "figure", "value");
        println!("|{}|{}|------|", "-".repeat(width + 2), "-".repeat(14));
        for (name, value, unit) in &self.rows {
            println!("| {name:width$} | {value:>12} | {unit} |");
        }
    }
}
