//! A file dialog drawn with egui: folders and matching files of a
//! directory (listed on a thread, never on the UI thread), a folder field,
//! Up and Home, a file name field, Open/Save and Cancel.
//!
//! A native dialog (the `rfd` crate) was not used: on Linux it needs either
//! GTK 3 development headers or the XDG portal's D-Bus stack (zbus and an
//! async runtime, dozens of crates), minutes more on a 2-core build and a
//! dialog that does not open under Xvfb in the windowed test; this one is
//! a few hundred lines, no dependency, and the tests can click it.

use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;
use eframe::egui::{self, RichText};

use crate::app::Viewer;

/// What the dialog is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Open a workflow file.
    OpenWorkflow,
    /// Save the last snapshot as TIFF.
    SaveSnapshot,
    /// Acquire a Z series into this TIFF stack.
    SaveStack,
    /// Save the z-stack editor's workflow.
    SaveWorkflow,
}

impl Purpose {
    fn title(self) -> &'static str {
        match self {
            Purpose::OpenWorkflow => "Open a workflow",
            Purpose::SaveSnapshot => "Save the snapshot as TIFF",
            Purpose::SaveStack => "Acquire a Z series into a TIFF stack",
            Purpose::SaveWorkflow => "Save the z-stack workflow",
        }
    }

    fn saving(self) -> bool {
        self != Purpose::OpenWorkflow
    }

    fn extensions(self) -> &'static [&'static str] {
        match self {
            Purpose::OpenWorkflow | Purpose::SaveWorkflow => &["txt"],
            Purpose::SaveSnapshot | Purpose::SaveStack => &["tif", "tiff"],
        }
    }

    fn button(self) -> &'static str {
        match self {
            Purpose::OpenWorkflow => "Open",
            Purpose::SaveStack => "Acquire",
            _ => "Save",
        }
    }
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// A folder.
    pub dir: bool,
}

/// The dialog's state.
pub struct FilePicker {
    /// What it is for.
    pub purpose: Purpose,
    /// The folder shown.
    pub dir: PathBuf,
    /// The folder field.
    pub dir_input: String,
    /// The file name field.
    pub name: String,
    /// The folder's entries (folders, then matching files).
    pub entries: Vec<Entry>,
    listing: Option<Receiver<Result<Vec<Entry>, String>>>,
    /// Why the folder could not be listed, or the name is not usable.
    pub error: Option<String>,
    /// Show every file, not only those with the purpose's extensions.
    pub all_files: bool,
    ctx: egui::Context,
}

impl FilePicker {
    /// A dialog showing `dir`, with `name` in the name field.
    pub fn new(purpose: Purpose, dir: PathBuf, name: String, ctx: egui::Context) -> FilePicker {
        let mut p = FilePicker {
            purpose,
            dir_input: dir.display().to_string(),
            dir,
            name,
            entries: Vec::new(),
            listing: None,
            error: None,
            all_files: false,
            ctx,
        };
        p.list();
        p
    }

    /// Lists the folder on a thread.
    fn list(&mut self) {
        let dir = self.dir.clone();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let ctx = self.ctx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(list_dir(&dir));
            ctx.request_repaint();
        });
        self.listing = Some(rx);
    }

    /// Shows another folder.
    pub fn enter(&mut self, dir: PathBuf) {
        self.dir_input = dir.display().to_string();
        self.dir = dir;
        self.entries.clear();
        self.error = None;
        self.list();
    }

    /// True while the folder is being listed.
    pub fn listing(&self) -> bool {
        self.listing.is_some()
    }

    fn poll(&mut self) {
        if let Some(rx) = &self.listing {
            if let Ok(r) = rx.try_recv() {
                self.listing = None;
                match r {
                    Ok(e) => self.entries = e,
                    Err(e) => self.error = Some(e),
                }
            }
        }
    }

    /// The path the name field gives (absolute, or in the folder shown),
    /// with the purpose's extension added when saving without one.
    pub fn path(&self) -> Option<PathBuf> {
        let name = self.name.trim();
        if name.is_empty() {
            return None;
        }
        let mut p = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            self.dir.join(name)
        };
        if self.purpose.saving() && p.extension().is_none() {
            p.set_extension(self.purpose.extensions()[0]);
        }
        Some(p)
    }

    fn matches(&self, e: &Entry) -> bool {
        e.dir
            || self.all_files
            || Path::new(&e.name)
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| {
                    self.purpose
                        .extensions()
                        .iter()
                        .any(|w| w.eq_ignore_ascii_case(x))
                })
    }
}

/// The entries of `dir`: folders first, then files, each sorted by name;
/// hidden entries (a leading dot) left out.
pub fn list_dir(dir: &Path) -> Result<Vec<Entry>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut v: Vec<Entry> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            // Follows links: a link to a folder is a folder.
            let dir = std::fs::metadata(e.path()).is_ok_and(|m| m.is_dir());
            Some(Entry { name, dir })
        })
        .collect();
    v.sort_by(|a, b| {
        b.dir
            .cmp(&a.dir)
            .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
    });
    Ok(v)
}

/// The user's home folder, if the environment names one.
fn home() -> Option<PathBuf> {
    std::env::var_os(if cfg!(windows) { "USERPROFILE" } else { "HOME" }).map(PathBuf::from)
}

impl Viewer {
    pub(crate) fn picker_dialog(&mut self, ctx: &egui::Context) {
        let Some(p) = self.picker.as_mut() else {
            return;
        };
        p.poll();
        let mut outcome: Option<Option<PathBuf>> = None;
        let mut enter = None;
        let hits = &mut self.hits;
        let r = egui::Modal::new(egui::Id::new("file picker")).show(ctx, |ui| {
            ui.set_width(520.0);
            ui.heading(p.purpose.title());
            ui.horizontal(|ui| {
                ui.label("Folder");
                let r = ui.add(egui::TextEdit::singleline(&mut p.dir_input).desired_width(300.0));
                hits.put("picker folder", &r);
                if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                    enter = Some(PathBuf::from(p.dir_input.trim()));
                }
                if ui.button("⬆ Up").clicked() {
                    if let Some(up) = p.dir.parent() {
                        enter = Some(up.to_path_buf());
                    }
                }
                if let Some(h) = home() {
                    if ui.button("Home").clicked() {
                        enter = Some(h);
                    }
                }
            });
            egui::ScrollArea::vertical()
                .max_height(260.0)
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    if p.listing() {
                        ui.label(RichText::new("listing…").weak());
                    }
                    let shown: Vec<Entry> =
                        p.entries.iter().filter(|e| p.matches(e)).cloned().collect();
                    if shown.is_empty() && !p.listing() && p.error.is_none() {
                        ui.label(RichText::new("no folders or matching files here").weak());
                    }
                    for e in shown {
                        let label = if e.dir {
                            format!("📁 {}", e.name)
                        } else {
                            format!("📄 {}", e.name)
                        };
                        let selected = !e.dir && p.name == e.name;
                        let r = ui.selectable_label(selected, label);
                        hits.put(format!("picker entry {}", e.name), &r);
                        if e.dir && r.clicked() {
                            enter = Some(p.dir.join(&e.name));
                        } else if r.double_clicked() {
                            p.name = e.name.clone();
                            outcome = Some(p.path());
                        } else if r.clicked() {
                            p.name = e.name.clone();
                        }
                    }
                });
            ui.horizontal(|ui| {
                ui.label("File name");
                let r = ui.add(egui::TextEdit::singleline(&mut p.name).desired_width(330.0));
                hits.put("picker name", &r);
                if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                    outcome = Some(p.path());
                }
            });
            ui.checkbox(&mut p.all_files, "show every file");
            if let Some(path) = p.path() {
                if p.purpose.saving()
                    && p.entries.iter().any(|e| {
                        !e.dir && Some(e.name.as_str()) == path.file_name().and_then(|n| n.to_str())
                    })
                    && path.parent() == Some(p.dir.as_path())
                {
                    ui.label(
                        RichText::new("a file of this name exists: it will be replaced")
                            .color(crate::panels::PENDING),
                    );
                }
            }
            if let Some(e) = &p.error {
                ui.label(RichText::new(e).color(crate::panels::ERROR));
            }
            ui.horizontal(|ui| {
                let r = ui.add_enabled(
                    p.path().is_some(),
                    egui::Button::new(RichText::new(p.purpose.button()).strong()),
                );
                hits.put("picker ok", &r);
                if r.clicked() {
                    outcome = Some(p.path());
                }
                let r = ui.button("Cancel");
                hits.put("picker cancel", &r);
                if r.clicked() {
                    outcome = Some(None);
                }
            });
        });
        if outcome.is_none() && r.should_close() {
            outcome = Some(None);
        }
        if let Some(d) = enter {
            p.enter(d);
        }
        match outcome {
            Some(Some(path)) => {
                let purpose = p.purpose;
                self.picker = None;
                self.picked(purpose, path);
            }
            Some(None) => self.picker = None,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_come_first_and_the_save_name_gets_its_extension() {
        let dir =
            std::env::temp_dir().join(format!("flamingo-viewer-picker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b-folder")).unwrap();
        std::fs::write(dir.join("a.tif"), b"x").unwrap();
        std::fs::write(dir.join(".hidden"), b"x").unwrap();
        let e = list_dir(&dir).unwrap();
        assert_eq!(
            e,
            vec![
                Entry {
                    name: "b-folder".into(),
                    dir: true
                },
                Entry {
                    name: "a.tif".into(),
                    dir: false
                }
            ]
        );
        let mut p = FilePicker::new(
            Purpose::SaveSnapshot,
            dir.clone(),
            "cells".into(),
            egui::Context::default(),
        );
        assert_eq!(p.path(), Some(dir.join("cells.tif")));
        p.name = "  ".into();
        assert_eq!(p.path(), None);
        assert!(list_dir(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
