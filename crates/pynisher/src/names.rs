//! The one place where the engine's words get their names: every fieldless enum that a face shows
//! to its user (`Backend`, `MemoryLimitKind`, `CpuMeasure`, `MemoryMeasure`) is declared with
//! [`named_enum!`], which derives `name()`, `NAMES`, [`std::str::FromStr`], [`std::fmt::Display`]
//! and serde (as the same names) from one table. Faces call these instead of spelling the names.

use thiserror::Error;

/// A name that is not one of an enum's names (`Backend`, `MemoryLimitKind`, ...).
///
/// ```
/// let err = "cgroup3".parse::<pynisher::Backend>().unwrap_err();
/// assert_eq!(err.to_string(), "unknown backend \"cgroup3\" (expected one of: auto, cgroup2, cgroup1, none)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {what} {given:?} (expected one of: {})", .expected.join(", "))]
pub struct UnknownName {
    /// What kind of word was expected (`backend`, `memory limit kind`, ...).
    pub what: &'static str,
    /// The name that was given.
    pub given: String,
    /// Every valid name.
    pub expected: &'static [&'static str],
}

/// Declares a fieldless enum whose variants each have one stable lower-case name.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The stable name used in reports, on the command line and in Python.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::names::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::names::UnknownName {
                        what: $what,
                        given: s.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }
    };
}

pub(crate) use named_enum;
