//! Answers across several NATs: each box's log answers the same questions, every candidate
//! is labelled with the box that holds it, and the verdict counts subscribers box by box
//! (the same inside address behind two boxes is two subscribers).

use std::path::{Path, PathBuf};

use crate::maplog::dir;
use crate::reader::ReaderError;
use crate::reader::logdir::LogDir;
use crate::reader::model::{Answer, ClockNote, MappingSource, Question};

/// The log directories named, a folder of them expanded: a path that is a log directory
/// is itself; otherwise each of its subdirectories that is one, in name order.
pub fn log_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReaderError> {
    let mut out = Vec::new();
    for path in paths {
        if path.join(dir::MARKER).exists() || !path.is_dir() {
            // Not a folder of logs: opening it says what is wrong with it.
            out.push(path.clone());
            continue;
        }
        let io = |source| ReaderError::Io {
            path: path.clone(),
            source,
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.join(dir::MARKER).exists())
            .collect();
        if found.is_empty() {
            // Neither a log nor a folder of them: let opening it explain.
            out.push(path.clone());
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Several boxes' logs, answering as one.
pub struct Fleet {
    pub logs: Vec<LogDir>,
}

impl Fleet {
    pub fn open(paths: &[PathBuf]) -> Result<Fleet, ReaderError> {
        let logs = log_paths(paths)?
            .iter()
            .map(|p| LogDir::open(Path::new(p)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Fleet { logs })
    }
}

impl MappingSource for Fleet {
    fn answer(&mut self, q: &Question) -> Result<Answer, ReaderError> {
        let mut answers = self.answer_all(std::slice::from_ref(q))?;
        Ok(answers.pop().expect("one answer per question"))
    }

    fn answer_all(&mut self, questions: &[Question]) -> Result<Vec<Answer>, ReaderError> {
        if let [log] = self.logs.as_mut_slice() {
            // One box: its answers as they are, unlabelled.
            return log.answer_all(questions);
        }
        let mut merged: Vec<(Vec<_>, ClockNote)> = questions
            .iter()
            .map(|_| (Vec::new(), ClockNote::default()))
            .collect();
        for log in &mut self.logs {
            let answers = log.answer_all(questions)?;
            for ((candidates, clock), answer) in merged.iter_mut().zip(answers) {
                candidates.extend(answer.candidates.into_iter().map(|mut c| {
                    c.box_name = Some(log.box_name.clone());
                    c
                }));
                clock.unsynchronised |= answer.clock.unsynchronised;
                clock.stepped_ns = clock.stepped_ns.max(answer.clock.stepped_ns);
                clock.max_error_us = clock.max_error_us.max(answer.clock.max_error_us);
            }
        }
        Ok(merged
            .into_iter()
            .map(|(candidates, clock)| Answer::new(candidates, clock))
            .collect())
    }
}
