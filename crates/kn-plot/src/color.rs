//! Colours and the colour scales of the charts.

/// An opaque RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Color(pub u8, pub u8, pub u8);

impl Color {
    /// White.
    pub const WHITE: Self = Self(255, 255, 255);
    /// Black.
    pub const BLACK: Self = Self(0, 0, 0);
    /// Axis and grid grey.
    pub const GREY: Self = Self(150, 150, 150);
    /// Light grid grey.
    pub const LIGHT: Self = Self(225, 225, 225);
    /// The bar colours, in series order (colour-blind-safe, Okabe–Ito).
    pub const SERIES: [Self; 6] = [
        Self(0, 114, 178),
        Self(230, 159, 0),
        Self(0, 158, 115),
        Self(204, 121, 167),
        Self(86, 180, 233),
        Self(213, 94, 0),
    ];

    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// Linear interpolation towards `other` (`t` in `[0, 1]`).
    pub fn mix(self, other: Self, t: f32) -> Self {
        let t = t.clamp(0.0, 1.0);
        let f = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * t).round() as u8;
        Self(f(self.0, other.0), f(self.1, other.1), f(self.2, other.2))
    }

    /// Diverging scale for signed values in `[-1, 1]`: blue (negative), white (0), red (positive).
    pub fn diverging(v: f32) -> Self {
        const BLUE: Color = Color(33, 102, 172);
        const RED: Color = Color(178, 24, 43);
        if v.is_nan() {
            return Self::GREY;
        }
        if v >= 0.0 {
            Self::WHITE.mix(RED, v)
        } else {
            Self::WHITE.mix(BLUE, -v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_scale_ends_and_middle() {
        assert_eq!(Color::diverging(0.0), Color::WHITE);
        assert_eq!(Color::diverging(1.0), Color(178, 24, 43));
        assert_eq!(Color::diverging(-1.0), Color(33, 102, 172));
        assert_eq!(Color::diverging(7.0), Color(178, 24, 43));
        assert_eq!(Color::BLACK.mix(Color::WHITE, 0.5), Color(128, 128, 128));
        assert_eq!(Color(1, 2, 255).hex(), "#0102ff");
    }
}
