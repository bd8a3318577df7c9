//! Reductions: the built-in operations ([`Op`]) on the element types they apply to ([`Reducible`]), and
//! a user's function over two slices, both as a [`Reduction`] the reducing collectives combine with,
//! in the fixed order the collectives' docs give.

#![forbid(unsafe_code)]

use std::fmt;

use bytemuck::Pod;

use crate::error::{Error, Result};

/// A built-in reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `a + b` (integers wrap on overflow).
    Sum,
    /// `a * b` (integers wrap on overflow).
    Product,
    /// The smaller (for floats, [`f64::min`]: a NaN loses to a number).
    Min,
    /// The larger (for floats, [`f64::max`]: a NaN loses to a number).
    Max,
    /// Bitwise and: integers only.
    BitAnd,
    /// Bitwise or: integers only.
    BitOr,
    /// Bitwise exclusive or: integers only.
    BitXor,
}

impl Op {
    /// The operation's name, as errors and call descriptions give it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sum => "sum",
            Self::Product => "product",
            Self::Min => "min",
            Self::Max => "max",
            Self::BitAnd => "bitand",
            Self::BitOr => "bitor",
            Self::BitXor => "bitxor",
        }
    }

    /// The code a call's messages carry (0 is no reduction, [`USER`] a user's function).
    fn wire_code(self) -> u8 {
        self as u8 + 1
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The code a call carries for a user's function.
pub(crate) const USER: u8 = 0xff;

/// The name of the reduction a call's code names, for its description.
pub(crate) fn code_name(code: u8) -> &'static str {
    const OPS: [Op; 7] = [Op::Sum, Op::Product, Op::Min, Op::Max, Op::BitAnd, Op::BitOr, Op::BitXor];
    match code {
        USER => "a user's function",
        code => OPS.iter().find(|op| op.wire_code() == code).map_or("an unknown operation", |op| op.name()),
    }
}

/// An element type the built-in operations apply to: the integers (every [`Op`]) and the floats (all
/// but the bitwise ones).
pub trait Reducible: Pod + Send + Sync {
    /// The type's name, for errors.
    const NAME: &'static str;
    /// `acc[i] = acc[i] op next[i]` for every `i`; false, leaving `acc` alone, when `op` does not apply
    /// to the type.
    fn apply(op: Op, acc: &mut [Self], next: &[Self]) -> bool;
}

/// Runs `f(a, b)` into every element of `acc`.
fn each<T: Copy>(acc: &mut [T], next: &[T], f: impl Fn(T, T) -> T) -> bool {
    acc.iter_mut().zip(next).for_each(|(a, &b)| *a = f(*a, b));
    true
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl Reducible for $t {
            const NAME: &'static str = stringify!($t);
            fn apply(op: Op, acc: &mut [Self], next: &[Self]) -> bool {
                match op {
                    Op::Sum => each(acc, next, <$t>::wrapping_add),
                    Op::Product => each(acc, next, <$t>::wrapping_mul),
                    Op::Min => each(acc, next, Ord::min),
                    Op::Max => each(acc, next, Ord::max),
                    Op::BitAnd => each(acc, next, |a, b| a & b),
                    Op::BitOr => each(acc, next, |a, b| a | b),
                    Op::BitXor => each(acc, next, |a, b| a ^ b),
                }
            }
        }
    )*};
}

macro_rules! floats {
    ($($t:ty),*) => {$(
        impl Reducible for $t {
            const NAME: &'static str = stringify!($t);
            fn apply(op: Op, acc: &mut [Self], next: &[Self]) -> bool {
                match op {
                    Op::Sum => each(acc, next, |a, b| a + b),
                    Op::Product => each(acc, next, |a, b| a * b),
                    Op::Min => each(acc, next, <$t>::min),
                    Op::Max => each(acc, next, <$t>::max),
                    Op::BitAnd | Op::BitOr | Op::BitXor => false,
                }
            }
        }
    )*};
}

integers!(u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, usize, isize);
floats!(f32, f64);

/// How a reducing collective combines two vectors of `T`: a built-in [`Op`] on a [`Reducible`] type, or
/// a user's function `|acc: &mut [T], next: &[T]|` that sets each `acc[i]` to `acc[i] ⊕ next[i]` (for
/// any plain-data `T`, as a `#[repr(C)]` struct). The function is called on pieces of the vectors, in the
/// [fixed order](crate::mesh::collectives#the-fixed-order-of-reductions), from several threads at once for large vectors: it must give
/// each element's result from that element alone.
pub trait Reduction<T>: Sync {
    /// `acc[i] = acc[i] ⊕ next[i]`; both have the same length.
    fn combine(&self, acc: &mut [T], next: &[T]);
    /// The code the call's messages carry, so that ranks that reduce differently are told apart.
    fn code(&self) -> u8;
    /// Fails when the operation does not apply to `T`.
    fn check(&self, op: &'static str) -> Result<()>;
}

impl<T: Reducible> Reduction<T> for Op {
    fn combine(&self, acc: &mut [T], next: &[T]) {
        T::apply(*self, acc, next);
    }

    fn code(&self) -> u8 {
        self.wire_code()
    }

    fn check(&self, op: &'static str) -> Result<()> {
        match T::apply(*self, &mut [], &[]) {
            true => Ok(()),
            false => Err(Error::OperationNotForType { op, operation: self.name(), element: T::NAME }),
        }
    }
}

impl<T, F: Fn(&mut [T], &[T]) + Sync> Reduction<T> for F {
    fn combine(&self, acc: &mut [T], next: &[T]) {
        self(acc, next);
    }

    fn code(&self) -> u8 {
        USER
    }

    fn check(&self, _op: &'static str) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_applies_to_integers_and_the_arithmetic_ones_to_floats() {
        let mut acc = [6u8, 250, 0b1100];
        Op::Sum.combine(&mut acc, &[1, 10, 0b1010]);
        assert_eq!(acc, [7, 4, 0b10110], "integers wrap");
        let mut bits = [0b1100i32];
        Op::BitXor.combine(&mut bits, &[0b1010]);
        assert_eq!(bits, [0b0110]);
        let mut floats = [1.0f64, f64::NAN];
        Op::Min.combine(&mut floats, &[0.5, 2.0]);
        assert_eq!(floats, [0.5, 2.0]);
        assert!(Reduction::<f64>::check(&Op::Max, "all_reduce").is_ok());
        let refused = Reduction::<f64>::check(&Op::BitAnd, "all_reduce").unwrap_err();
        assert_eq!(
            refused,
            Error::OperationNotForType { op: "all_reduce", operation: "bitand", element: "f64" }
        );
        assert_eq!(code_name(Op::BitOr.wire_code()), "bitor");
        assert_eq!(code_name(USER), "a user's function");
    }

    #[test]
    fn a_user_s_function_is_a_reduction() {
        #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        #[repr(C)]
        struct MinLoc {
            value: f64,
            rank: u64,
        }
        let min_loc = |acc: &mut [MinLoc], next: &[MinLoc]| {
            for (a, b) in acc.iter_mut().zip(next) {
                if b.value < a.value {
                    *a = *b;
                }
            }
        };
        let mut acc = [MinLoc { value: 3.0, rank: 0 }];
        min_loc.combine(&mut acc, &[MinLoc { value: 1.0, rank: 2 }]);
        assert_eq!(acc[0].rank, 2);
        assert_eq!(Reduction::<MinLoc>::code(&min_loc), USER);
    }
}
