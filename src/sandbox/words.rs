//! Fixed word lists the synthetic profiles are drawn from. Fixed in the code
//! so that a profile never changes between builds or machines.

/// An `interest_graph` category: its key, the label key of its interests
/// (the provider's label key varies by category), labels and handles.
pub struct Category {
    pub key: &'static str,
    pub label: &'static str,
    pub items: &'static [&'static str],
    pub handles: &'static [&'static str],
}

pub const CATEGORIES: &[Category] = &[
    Category {
        key: "technology",
        label: "topic",
        items: &[
            "Machine Learning",
            "Distributed Systems",
            "Open Source",
            "Cybersecurity",
            "Developer Experience",
            "Cloud Infrastructure",
            "Data Engineering",
            "Robotics",
        ],
        handles: &[
            "@github",
            "@huggingface",
            "@exampleai",
            "@hackernews",
            "@wired",
            "@verge",
        ],
    },
    Category {
        key: "sports_and_fitness",
        label: "activity",
        items: &[
            "Running",
            "Cycling",
            "Climbing",
            "Yoga",
            "Swimming",
            "Triathlon",
            "Tennis",
            "Hiking",
        ],
        handles: &["@strava", "@nike", "@garmin", "@peloton", "@rei"],
    },
    Category {
        key: "music",
        label: "genre",
        items: &[
            "Indie Rock",
            "Jazz",
            "Electronic",
            "Classical",
            "Hip Hop",
            "Ambient",
            "Folk",
        ],
        handles: &[
            "@spotify",
            "@pitchfork",
            "@nprmusic",
            "@boilerroom",
            "@kexp",
        ],
    },
    Category {
        key: "food_and_drink",
        label: "cuisine",
        items: &[
            "Specialty Coffee",
            "Natural Wine",
            "Japanese",
            "Plant-Based",
            "Craft Beer",
            "Baking",
            "Mediterranean",
        ],
        handles: &["@bonappetit", "@eater", "@seriouseats", "@nytfood"],
    },
    Category {
        key: "travel",
        label: "destination",
        items: &[
            "Japan",
            "Iceland",
            "Portugal",
            "Patagonia",
            "Mexico City",
            "New Zealand",
        ],
        handles: &["@lonelyplanet", "@natgeotravel", "@airbnb", "@cntraveler"],
    },
    Category {
        key: "books_and_reading",
        label: "subject",
        items: &[
            "Science Fiction",
            "Economics",
            "History",
            "Philosophy",
            "Biographies",
            "Poetry",
        ],
        handles: &["@goodreads", "@nybooks", "@longreads", "@penguinbooks"],
    },
    Category {
        key: "gaming",
        label: "game",
        items: &[
            "Strategy Games",
            "Indie Games",
            "Chess",
            "Tabletop RPGs",
            "Speedrunning",
        ],
        handles: &["@steam", "@chesscom", "@nintendo", "@itchio"],
    },
    Category {
        key: "arts_and_culture",
        label: "art_form",
        items: &[
            "Photography",
            "Architecture",
            "Contemporary Art",
            "Film",
            "Design",
        ],
        handles: &["@moma", "@a24", "@dezeen", "@magnumphotos", "@tate"],
    },
    Category {
        key: "finance",
        label: "theme",
        items: &[
            "Personal Finance",
            "Venture Capital",
            "Index Investing",
            "Macro Economics",
            "Crypto",
        ],
        handles: &["@bloomberg", "@ft", "@a16z", "@morningbrew"],
    },
];

pub const ARCHETYPES: &[&str] = &[
    "Tech Leader",
    "Thought Leader",
    "Builder",
    "Community Organizer",
    "Creative Professional",
    "Lifelong Learner",
    "Outdoor Enthusiast",
    "Early Adopter",
    "Connector",
    "Foodie",
    "Globetrotter",
];

pub const CORE_HANDLES: &[&str] = &[
    "@techcrunch",
    "@ycombinator",
    "@producthunt",
    "@ted",
    "@fastcompany",
    "@hbr",
    "@theeconomist",
];

/// `brand_affinities` categories and their brands.
pub const BRANDS: &[(&str, &[&str])] = &[
    (
        "Cloud Platforms",
        &["AWS", "Google Cloud", "Azure", "Cloudflare", "Vercel"],
    ),
    (
        "Athletic Wear",
        &["Nike", "Patagonia", "Lululemon", "Adidas", "On"],
    ),
    (
        "Consumer Electronics",
        &["Apple", "Sony", "Garmin", "Samsung"],
    ),
    (
        "Productivity Software",
        &["Notion", "Linear", "Figma", "Slack"],
    ),
    ("Coffee", &["Blue Bottle", "Stumptown", "Nespresso"]),
    ("Automotive", &["Tesla", "Rivian", "Volvo", "Porsche"]),
    ("Travel", &["Airbnb", "Booking.com", "Delta", "Lufthansa"]),
    (
        "Streaming",
        &["Netflix", "Spotify", "YouTube", "Criterion Channel"],
    ),
];

pub const INDUSTRIES: &[&str] = &[
    "SaaS",
    "Developer Tools",
    "FinTech",
    "HealthTech",
    "E-commerce",
    "Climate Tech",
    "Media",
    "Education",
    "Cybersecurity",
    "Biotech",
];

pub const INDUSTRY_HANDLES: &[&str] = &[
    "@github",
    "@stripe",
    "@a16z",
    "@sequoia",
    "@figma",
    "@datadoghq",
    "@vercel",
    "@linear",
];

/// (city, country) pairs for `location_intelligence`.
pub const PLACES: &[(&str, &str)] = &[
    ("San Francisco Bay Area", "United States"),
    ("New York City", "United States"),
    ("Austin", "United States"),
    ("London", "United Kingdom"),
    ("Berlin", "Germany"),
    ("Toronto", "Canada"),
    ("Amsterdam", "Netherlands"),
    ("Paris", "France"),
    ("Lisbon", "Portugal"),
    ("Singapore", "Singapore"),
    ("Sydney", "Australia"),
    ("Bangalore", "India"),
];

pub const LOCAL_HANDLES: &[&str] = &["@timeout", "@citylab", "@curbed", "@meetup", "@eater"];

pub const CULTURE_THEMES: &[&str] = &[
    "Indie Film",
    "Minimalist Design",
    "Science Communication",
    "Street Photography",
    "Slow Travel",
    "Maker Culture",
    "Stand-up Comedy",
    "Podcasts",
    "Sustainability",
];

pub const CULTURE_HANDLES: &[&str] = &[
    "@a24",
    "@kinfolk",
    "@radiolab",
    "@makezine",
    "@criterion",
    "@99pi",
];

pub const TRAITS: &[&str] = &[
    "Curious",
    "Analytical",
    "Ambitious",
    "Community-minded",
    "Adventurous",
    "Detail-oriented",
    "Pragmatic",
];

pub const VALUES: &[&str] = &[
    "Sustainability",
    "Continuous Learning",
    "Work-Life Balance",
    "Craftsmanship",
    "Transparency",
    "Health",
];

pub const PSYCHO_HANDLES: &[&str] = &["@ted", "@hbr", "@calm", "@headspace", "@duolingo"];

pub const CLUSTERS: &[&str] = &[
    "Startup Founders",
    "Open Source Maintainers",
    "Endurance Athletes",
    "Product Designers",
    "Venture Investors",
    "Tech Journalists",
    "Data Scientists",
    "Local Food Scene",
];

pub const CLUSTER_HANDLES: &[&str] = &[
    "@ycombinator",
    "@github",
    "@strava",
    "@figma",
    "@a16z",
    "@techcrunch",
    "@kaggle",
    "@eater",
];
