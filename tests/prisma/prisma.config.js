// Prisma 7 reads its configuration from here (the schema no longer holds the URL).
// `prisma generate` needs no database; the app passes its URL to @prisma/adapter-pg.
const { defineConfig } = require('prisma/config');

module.exports = defineConfig({
  schema: 'prisma/schema.prisma',
});
