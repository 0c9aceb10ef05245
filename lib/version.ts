/** This library's version, as package.json says (a unit spec keeps the two equal). */
export const VERSION = '0.1.0';
