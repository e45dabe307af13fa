//! Input a test gives the window as a person would: clicks at a widget's
//! place, typed text, key presses, wheel turns. Queued per frame (a press
//! in one frame, its release in the next, as a mouse does) and handed to
//! egui with the frame's raw input: by the windowed self-test through
//! eframe's input hook, by the headless tests directly.

use std::collections::VecDeque;

use eframe::egui::{self, Event, Modifiers, PointerButton, Pos2};

/// Queued input, one entry per frame.
#[derive(Debug, Default)]
pub struct Pointer {
    queue: VecDeque<Vec<Event>>,
}

impl Pointer {
    /// A click at `p` (press, then release in the next frame).
    pub fn click_at(&mut self, p: Pos2) {
        let press = |pressed| Event::PointerButton {
            pos: p,
            button: PointerButton::Primary,
            pressed,
            modifiers: Modifiers::NONE,
        };
        self.queue
            .push_back(vec![Event::PointerMoved(p), press(true)]);
        self.queue.push_back(vec![press(false)]);
    }

    /// A drag from `from` to `to` (press, moves, release).
    pub fn drag(&mut self, from: Pos2, to: Pos2) {
        let button = |pos, pressed| Event::PointerButton {
            pos,
            button: PointerButton::Primary,
            pressed,
            modifiers: Modifiers::NONE,
        };
        self.queue
            .push_back(vec![Event::PointerMoved(from), button(from, true)]);
        for i in 1..=4 {
            let t = i as f32 / 4.0;
            self.queue
                .push_back(vec![Event::PointerMoved(from + (to - from) * t)]);
        }
        self.queue.push_back(vec![button(to, false)]);
    }

    /// The pointer moves to `p`.
    pub fn move_to(&mut self, p: Pos2) {
        self.queue.push_back(vec![Event::PointerMoved(p)]);
    }

    /// Text typed into the focused field.
    pub fn text(&mut self, s: &str) {
        self.queue.push_back(vec![Event::Text(s.to_string())]);
    }

    /// A key pressed and released.
    pub fn key(&mut self, key: egui::Key, modifiers: Modifiers) {
        let ev = |pressed| Event::Key {
            key,
            physical_key: None,
            pressed,
            repeat: false,
            modifiers,
        };
        self.queue.push_back(vec![ev(true)]);
        self.queue.push_back(vec![ev(false)]);
    }

    /// The wheel turned by `lines` (positive: away from the user) at `p`.
    pub fn wheel(&mut self, p: Pos2, lines: f32) {
        self.queue.push_back(vec![
            Event::PointerMoved(p),
            Event::MouseWheel {
                unit: egui::MouseWheelUnit::Line,
                delta: egui::vec2(0.0, lines),
                modifiers: Modifiers::NONE,
            },
        ]);
    }

    /// The next frame's events.
    pub fn next_frame(&mut self) -> Vec<Event> {
        self.queue.pop_front().unwrap_or_default()
    }

    /// True while input is queued.
    pub fn busy(&self) -> bool {
        !self.queue.is_empty()
    }
}
