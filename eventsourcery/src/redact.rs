//! `Debug` for the types that show only some of their fields: those holding key material,
//! ciphertexts or personal data, and those holding things without a `Debug` worth printing.

/// Implements `Debug` for the struct `$type`, showing only the fields listed, in order, then
/// `..` for the others. A field may be shown by what one of its methods answers
/// (`steps.len()`), under its own name.
macro_rules! debug_fields {
    ($type:ident { $($field:ident $(. $method:ident ())?),+ $(,)? }) => {
        impl ::core::fmt::Debug for $type {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(stringify!($type))
                    $(.field(stringify!($field), &self.$field $(.$method())?))+
                    .finish_non_exhaustive()
            }
        }
    };
}

pub(crate) use debug_fields;
