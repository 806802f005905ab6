/* Compiled by gcc with and without leakalloc; the object files must be identical. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
  struct node* left;
  struct node* right;
  int key;
  char name[24];
};

static struct node* insert(struct node* t, int key) {
  if (t == NULL) {
    struct node* n = calloc(1, sizeof *n);
    n->key = key;
    snprintf(n->name, sizeof n->name, "node-%d", key);
    return n;
  }
  if (key < t->key) t->left = insert(t->left, key);
  else if (key > t->key) t->right = insert(t->right, key);
  return t;
}

static long walk(const struct node* t, int depth) {
  if (t == NULL) return 0;
  return walk(t->left, depth + 1) + (long)t->key * depth + (long)strlen(t->name) + walk(t->right, depth + 1);
}

static void drop(struct node* t) {
  if (t == NULL) return;
  drop(t->left);
  drop(t->right);
  free(t);
}

int main(void) {
  struct node* root = NULL;
  for (int i = 0; i < 5000; i++) root = insert(root, (i * 7919) % 10007);
  printf("%ld\n", walk(root, 0));
  drop(root);
  return 0;
}
